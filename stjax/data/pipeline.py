"""One path from a data config to model-ready batches: load -> clean -> split -> batch.

`data` config fields (an `ml_collections.ConfigDict` or a dict; defaults in `stjax.config.data_defaults`):
  source: 'synthetic', 'ml-100k', 'ml-1m', 'foursquare-nyc' (fetched into data_dir on first use;
    foursquare-nyc from $STJAX_DATA_MIRROR when GitHub is unreachable) or a path
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

import ml_collections

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


def resolve(config) -> ml_collections.ConfigDict:
    """A data config (ConfigDict or dict, possibly partial) over `stjax.config.data_defaults()`:
    the defaults live in one place. An unknown key is an error."""
    from stjax.config import data_defaults

    resolved = data_defaults()
    given = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    for key, value in given.items():
        if key not in resolved:
            raise ValueError(f"unknown data config key '{key}'; valid keys: {', '.join(sorted(resolved.keys()))}")
        resolved[key] = value
    return resolved


def load_source(config, log=print) -> tuple[InteractionLog, RepairReport, object]:
    config = resolve(config)
    source = config.source
    if source == "synthetic":
        from stjax.data.synthetic import SyntheticConfig, generate

        synthetic = SyntheticConfig(
            num_users=config.synthetic_users,
            num_items=config.synthetic_items,
            num_events=config.synthetic_events,
            influence_probability=config.synthetic_influence,
            influencer_region=config.synthetic_influencer_region,
        )
        interactions, truth = generate(config.seed, synthetic)
        report = RepairReport(rows_read=len(interactions), kept=len(interactions))
        return interactions, report, truth
    if source in ("ml-100k", "ml-1m", "foursquare-nyc"):
        # Fetched into data_dir on first use; foursquare-nyc falls back to $STJAX_DATA_MIRROR offline.
        from stjax.data.fetch import fetch

        path = Path(config.data_dir) / source
        if not path.exists():
            fetch(source, path.parent, log=log)
        loaded = load(path)
    else:
        loaded = load(source, config.format or None, columns=parse_columns(config.columns))
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
    config = resolve(config)
    set_low_memory(config.low_memory)
    timings = {}
    start = time.perf_counter()
    interactions, report, truth = load_source(config, log)
    timings["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    interactions = preprocess(
        interactions,
        dedup=config.dedup,
        user_k=config.user_k,
        item_k=config.item_k,
        min_length=config.min_length,
        report=report,
    )
    report.check()
    release_memory()
    timings["preprocess_s"] = time.perf_counter() - start
    start = time.perf_counter()
    method = config.split
    fractions = dict(valid_fraction=config.valid_fraction, test_fraction=config.test_fraction)
    extra = {"leave_one_out": {}, "temporal": fractions,
             "held_out_users": fractions | {"seed": config.seed}}.get(method, {})
    split = make_split(interactions, method, **extra)
    timings["split_s"] = time.perf_counter() - start
    start = time.perf_counter()
    release_memory()
    sequences = build_sequences(split, config.max_length, config.window,
                                max_targets=config.max_targets,
                                fold_in_fraction=config.fold_in_fraction,
                                seed=config.seed, bags=batch_kind == "bag")
    bags = None
    if batch_kind == "sequence":
        source = take_rows(sequences.train)
    elif batch_kind == "bag":
        bags = build_bags(split, config.max_bag)
        if bags["truncated"]:
            log(f"bags: {bags['truncated']:,} older training items cut by data.max_bag={config.max_bag}")
        source = take_rows({"users": bags["users"], "bag": bags["bag"]})
    elif batch_kind == "pairs":
        source = pairs_with_negatives(training_pairs(split), interactions.num_items, config.num_negatives)
    else:
        raise ValueError(f"batch kind {batch_kind!r} has no batch builder yet")
    timings["sequences_s"] = time.perf_counter() - start
    return Prepared(interactions, split, sequences, report, timings, truth, source, bags)
