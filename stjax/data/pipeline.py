"""One path from a data config to model-ready batches: load -> clean -> split -> batch.

`data` config fields (an `ml_collections.ConfigDict` or a dict; defaults in `stjax.config.data_defaults`):
  source: 'synthetic', 'ml-100k', 'ml-1m', 'foursquare-nyc' (fetched into data_dir on first use;
    foursquare-nyc from $STJAX_DATA_MIRROR when GitHub is unreachable) or a path
  format, columns ("role=column,..."): for paths (see stjax.data.formats)
  data_dir, dedup, user_k, item_k, min_length, split, valid_fraction, test_fraction, seed,
  max_length, window, max_bag, num_negatives, max_targets, fold_in_fraction, low_memory,
  synthetic_users, synthetic_items, synthetic_events
The batch kind (`sequence`, `bag`, `pairs`) decides what the training batches hold; `series`
(forecasters) reads the log as a panel of daily series instead (`stjax.data.series`: split 'series',
series_cutoff, series_horizon, series_min_events; max_length = days of inputs).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import ml_collections

from stjax.data.batching import (
    BatchBuilder,
    SequenceData,
    build_sequences,
    take_rows,
)
from stjax.data.errors import RepairReport
from stjax.data.formats import load
from stjax.data.kinds import train_source
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


def data_defaults() -> ml_collections.ConfigDict:
    """The `data` section of a config: every key the data pipeline reads, with its default (the
    only place they live; `stjax.config.base_config` takes them from here)."""
    return ml_collections.ConfigDict(dict(
        # Where events come from: 'synthetic', 'ml-100k', 'ml-1m' or a path (format and columns,
        # e.g. "user=uid,item=iid,timestamp=ts", as for `stjax data validate`).
        source="synthetic", data_dir="data", format="", columns="",
        # Cleaning and split (split: leave_one_out, temporal or held_out_users; the fractions are
        # those of the temporal and held-out-user splits; seed draws held-out users, fold-in and
        # synthetic data).
        dedup=False, user_k=0, item_k=0, min_length=0, split="leave_one_out", valid_fraction=0.1,
        test_fraction=0.1, seed=0,
        # min_value: keep events whose value (rating) is >= it (0 = all; Mult-VAE: 4). valid_users /
        # test_users: held_out_users by counts instead of fractions (0 = use the fraction).
        min_value=0.0, valid_users=0, test_users=0,
        # Batches: sequence windows (window: last or all), bags (max_bag: 0 = no cap), pairs.
        max_length=50, window="last", max_bag=0, num_negatives=1,
        # Evaluation rows: at most max_targets targets per user (0 = all); fold-in input share.
        max_targets=0, fold_in_fraction=0.8,
        # Arrow's system allocator and heap trimming between stages (large logs).
        low_memory=True,
        # Synthetic data: sizes, the share of events copied from a planted influencer, and where
        # influencers live ('same' region as the user or 'any').
        synthetic_users=1000, synthetic_items=1000, synthetic_events=100_000, synthetic_influence=0.1,
        synthetic_influencer_region="same",
        # Forecasters (split 'series'): the panel's first test day (0 = the last series_horizon days;
        # negative: that many days earlier), days forecast, and the check-ins a Foursquare cell needs.
        series_cutoff=0, series_horizon=7, series_min_events=1000))


def resolve(config) -> ml_collections.ConfigDict:
    """A data config (ConfigDict or dict, possibly partial) over `data_defaults()`: the defaults
    live in one place. An unknown key is an error."""
    resolved = data_defaults()
    given = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    for key, value in given.items():
        if key not in resolved:
            raise ValueError(f"unknown data config key '{key}'; valid keys: {', '.join(sorted(resolved.keys()))}")
        resolved[key] = value
    return resolved


def load_source(config, log=print, region_resolution: int | None = None) -> tuple[InteractionLog, RepairReport, object]:
    """The log of `config.source` (and the synthetic truth, else None). region_resolution: the H3
    resolution of check-in regions (the loaders' default when None)."""
    config = resolve(config)
    options = {} if region_resolution is None else {"region_resolution": region_resolution}
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
        loaded = load(path, **options)
    else:
        loaded = load(source, config.format or None, columns=parse_columns(config.columns), **options)
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
    if batch_kind == "series":
        return prepare_series(config, log)
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
        min_value=float(config.min_value),
        report=report,
    )
    report.check()
    release_memory()
    timings["preprocess_s"] = time.perf_counter() - start
    start = time.perf_counter()
    method = config.split
    fractions = dict(valid_fraction=config.valid_fraction, test_fraction=config.test_fraction)
    counts = dict(valid_users=int(config.valid_users), test_users=int(config.test_users))
    extra = {"leave_one_out": {}, "temporal": fractions,
             "held_out_users": fractions | counts | {"seed": config.seed}}.get(method, {})
    split = make_split(interactions, method, **extra)
    timings["split_s"] = time.perf_counter() - start
    start = time.perf_counter()
    release_memory()
    sequences = build_sequences(split, config.max_length, config.window,
                                max_targets=config.max_targets,
                                fold_in_fraction=config.fold_in_fraction,
                                seed=config.seed, bags=batch_kind == "bag")
    source, bags = train_source(batch_kind, split, sequences, config, log)
    timings["sequences_s"] = time.perf_counter() - start
    return Prepared(interactions, split, sequences, report, timings, truth, source, bags)


def prepare_series(config, log=print) -> Prepared:
    """A forecaster's data: the panel of `config.source` (check-in cells at H3 resolution 6, as
    `stjax analyze forecast` defines it) cut at `series_cutoff` into windows (`SeriesData`). The
    log is used as loaded (the panel's definition says what it removes)."""
    from stjax.data.series import panel, series_data

    config = resolve(config)
    if config.split != "series":
        raise ValueError(f"a forecaster reads data.split=series, found {config.split!r}")
    timings = {}
    start = time.perf_counter()
    interactions, report, truth = load_source(config, log, region_resolution=6)
    timings["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    data = series_data(panel(interactions, config.source, int(config.series_min_events)), int(config.series_cutoff),
                       int(config.series_horizon), int(config.max_length))
    timings["sequences_s"] = time.perf_counter() - start
    log(f"series: {data.num_users} series x {data.values.shape[1]} days ({data.definition}); test days "
        f"[{data.cutoff}, {data.cutoff + data.horizon}), {len(data.train['users']):,} training windows")
    return Prepared(interactions, None, data, report, timings, truth, take_rows(data.train), None)
