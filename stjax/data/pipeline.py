"""One path from a data config to model-ready batches: load -> clean -> split -> batch.

`data` config fields (an `ml_collections.ConfigDict` or a dict; defaults in `stjax.config.base_config`):
  source: 'synthetic', 'ml-100k', 'ml-1m' (fetched into data_dir on first use) or a path
  format, columns ("role=column,..."): for paths (see stjax.data.formats)
  data_dir, dedup, user_k, item_k, min_length, split, valid_fraction, test_fraction, seed,
  max_length, window, max_bag, num_negatives, max_targets, fold_in_fraction, low_memory,
  synthetic_users, synthetic_items, synthetic_events
The batch kind (`sequence`, `bag`, `pairs`) decides what the training batches hold.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from stjax.data.batching import (
    BatchBuilder,
    SequenceData,
    build_bags,
    build_sequences,
    pairs_with_negatives,
    take_rows,
    training_pairs,
)
from stjax.data.errors import RepairReport
from stjax.data.formats import load
from stjax.data.preprocess import preprocess
from stjax.data.splits import Split, make_split
from stjax.data.table import InteractionLog
from stjax.data.textio import release_memory, set_low_memory


@dataclasses.dataclass
class Prepared:
    log: InteractionLog
    split: Split
    sequences: SequenceData
    report: RepairReport
    timings: dict
    truth: object = None
    train_source: BatchBuilder | None = None  # rows of the batch kind's training examples
    bags: dict | None = None  # bag kind: users int32[U], bag int32[U, L]


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
        loaded = load(source, _get(config, "format") or None, columns=parse_columns(_get(config, "columns")))
    return loaded.log, loaded.report, None


def parse_columns(columns) -> dict[str, str] | None:
    """'user=uid,item=iid' (or a mapping) -> {'user': 'uid', 'item': 'iid'}; '' -> None."""
    if not columns:
        return None
    if not isinstance(columns, str):
        return dict(columns)
    mapping = {}
    for part in columns.split(","):
        if "=" not in part:
            raise ValueError(f"data.columns: expected ROLE=COLUMN pairs separated by commas, found {part!r}")
        role, column = part.split("=", 1)
        mapping[role.strip()] = column.strip()
    return mapping


def prepare(config, log=print, batch_kind: str = "sequence") -> Prepared:
    set_low_memory(_get(config, "low_memory", True))
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
    release_memory()
    timings["preprocess_s"] = time.perf_counter() - start
    start = time.perf_counter()
    method = _get(config, "split", "leave_one_out")
    fractions = dict(valid_fraction=_get(config, "valid_fraction", 0.1), test_fraction=_get(config, "test_fraction", 0.1))
    extra = {"leave_one_out": {}, "temporal": fractions,
             "held_out_users": fractions | {"seed": _get(config, "seed", 0)}}.get(method, {})
    split = make_split(interactions, method, **extra)
    timings["split_s"] = time.perf_counter() - start
    start = time.perf_counter()
    release_memory()
    sequences = build_sequences(split, _get(config, "max_length", 50), _get(config, "window", "last"),
                                max_targets=_get(config, "max_targets", 0),
                                fold_in_fraction=_get(config, "fold_in_fraction", 0.8),
                                seed=_get(config, "seed", 0), bags=batch_kind == "bag")
    bags = None
    if batch_kind == "sequence":
        source = take_rows(sequences.train)
    elif batch_kind == "bag":
        bags = build_bags(split, _get(config, "max_bag", 0))
        if bags["truncated"]:
            log(f"bags: {bags['truncated']:,} older training items cut by data.max_bag={_get(config, 'max_bag', 0)}")
        source = take_rows({"users": bags["users"], "bag": bags["bag"]})
    elif batch_kind == "pairs":
        source = pairs_with_negatives(training_pairs(split), interactions.num_items, _get(config, "num_negatives", 1))
    else:
        raise ValueError(f"batch kind {batch_kind!r} has no batch builder yet")
    timings["sequences_s"] = time.perf_counter() - start
    return Prepared(interactions, split, sequences, report, timings, truth, source, bags)
