"""One path from a data config to model-ready sequences: load -> clean -> split -> batch.

`data` config fields (an `ml_collections.ConfigDict` or a dict):
  source: 'synthetic', 'ml-100k', 'ml-1m' (fetched into data_dir on first use) or a path
  format, columns: for paths (see stjax.data.formats)
  data_dir, dedup, user_k, item_k, min_length, split, max_length, window, seed,
  synthetic_users, synthetic_items, synthetic_events
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from stjax.data.batching import SequenceData, build_sequences
from stjax.data.errors import RepairReport
from stjax.data.formats import load
from stjax.data.preprocess import preprocess
from stjax.data.splits import Split, make_split
from stjax.data.table import InteractionLog


@dataclasses.dataclass
class Prepared:
    log: InteractionLog
    split: Split
    sequences: SequenceData
    report: RepairReport
    timings: dict
    truth: object = None


def _get(config, key, default=None):
    try:
        value = config[key]
    except (KeyError, AttributeError):
        return default
    return default if value is None else value


def load_source(config, log=print) -> tuple[InteractionLog, RepairReport, object]:
    source = _get(config, "source", "synthetic")
    if source == "synthetic":
        from stjax.data.synthetic import SyntheticConfig, generate

        synthetic = SyntheticConfig(
            num_users=_get(config, "synthetic_users", 1000),
            num_items=_get(config, "synthetic_items", 1000),
            num_events=_get(config, "synthetic_events", 100_000),
        )
        interactions, truth = generate(_get(config, "seed", 0), synthetic)
        report = RepairReport(rows_read=len(interactions), kept=len(interactions))
        return interactions, report, truth
    if source in ("ml-100k", "ml-1m"):
        from stjax.data.fetch import fetch

        path = Path(_get(config, "data_dir", "data")) / source
        if not path.exists():
            fetch(source, path.parent, log=log)
        loaded = load(path)
    else:
        loaded = load(source, _get(config, "format"), columns=_get(config, "columns"))
    return loaded.log, loaded.report, None


def prepare(config, log=print) -> Prepared:
    timings = {}
    start = time.perf_counter()
    interactions, report, truth = load_source(config, log)
    timings["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    interactions = preprocess(
        interactions,
        dedup=_get(config, "dedup", False),
        user_k=_get(config, "user_k", 0),
        item_k=_get(config, "item_k", 0),
        min_length=_get(config, "min_length", 0),
        report=report,
    )
    report.check()
    timings["preprocess_s"] = time.perf_counter() - start
    start = time.perf_counter()
    split = make_split(interactions, _get(config, "split", "leave_one_out"))
    timings["split_s"] = time.perf_counter() - start
    start = time.perf_counter()
    sequences = build_sequences(split, _get(config, "max_length", 50), _get(config, "window", "last"))
    timings["sequences_s"] = time.perf_counter() - start
    return Prepared(interactions, split, sequences, report, timings, truth)
