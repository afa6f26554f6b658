"""Batch kinds: one record per kind of batch a model reads (`ModelSpec.batch_kind` names one).

Each `BatchKind` says how its batches are made everywhere they are needed:
  train(split, sequences, config, log) -> (BatchBuilder, bags or None)   training batches
  sample(batch_size, max_length, max_bag, num_negatives, horizon) -> dict  an all-padding batch (init)
  serve(histories, starts, ends, events, max_length, bag_width) -> dict  fields of a serving batch
      from users' histories (`stjax recommend`, `explain`, `export`); None: the kind cannot serve
  serve_span(max_length): how many of a user's most recent events `serve` reads
  known_users_only: the model has one row per trained user (it cannot score unseen users)
  eval_fields: the fields of the evaluation examples (`EvalBatch`) the model reads
Evaluation examples are the same for every kind (`stjax.data.batching.EvalBatch`, which carries
the history as a sequence and, for bag models, as a bag).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from stjax.data.batching import (
    BatchBuilder,
    build_bags,
    pairs_with_negatives,
    take_rows,
    training_pairs,
)
from stjax.data.series import sample_windows


@dataclasses.dataclass(frozen=True)
class BatchKind:
    name: str
    train: Callable | None
    sample: Callable[..., dict]
    serve: Callable[..., dict] | None = None
    serve_span: Callable[[int], int] = lambda max_length: 0
    known_users_only: bool = False
    eval_fields: tuple[str, ...] = ("users", "items", "timestamps", "target_timestamps", "exclude")


KINDS: dict[str, BatchKind] = {}


def register_kind(kind: BatchKind) -> BatchKind:
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> BatchKind:
    if name not in KINDS:
        raise ValueError(f"batch kind {name!r} is not one of {', '.join(KINDS)}")
    return KINDS[name]


def _zeros(batch_size: int) -> dict:
    return {"users": np.zeros(batch_size, np.int32), "weights": np.zeros(batch_size, np.float32)}


def last_events(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """values[max(start, end-width):end] per row, right-aligned and left-padded with 0. -> [rows, width]"""
    index = ends[:, None] - width + np.arange(width)[None, :]
    valid = index >= starts[:, None]
    if len(values) == 0:
        return np.zeros(index.shape, values.dtype)
    return np.where(valid, values[np.clip(index, 0, len(values) - 1)], 0).astype(values.dtype)


def recent_distinct(window: np.ndarray, width: int) -> np.ndarray:
    """Each row's distinct nonzero items, most recent last, keeping the `width` most recent.
    window: int32[B, S] in time order (0 = padding) -> int32[B, width], left-padded with 0."""
    rows, span = window.shape
    position = np.arange(span)[None, :]
    order = np.lexsort((np.broadcast_to(position, window.shape), window), axis=1)  # by item, then time
    ordered = np.take_along_axis(window, order, axis=1)
    last = np.ones(window.shape, bool)
    last[:, :-1] = ordered[:, 1:] != ordered[:, :-1]  # the last (most recent) occurrence of each item
    keep = np.zeros(window.shape, bool)
    np.put_along_axis(keep, order, last & (ordered > 0), axis=1)
    rank = np.cumsum(keep[:, ::-1], axis=1)[:, ::-1]  # 1 = the most recent kept item
    place = keep & (rank <= width)
    out = np.zeros((rows, width), window.dtype)
    row_index = np.broadcast_to(np.arange(rows)[:, None], window.shape)
    out[row_index[place], width - rank[place]] = window[place]
    return out


# ----------------------------------------------------------------------------- sequence


def _sequence_train(split, sequences, config, log):
    return take_rows(sequences.train), None


def _sequence_sample(batch_size, max_length, max_bag=1, num_negatives=1, horizon=1):
    window = np.zeros((batch_size, max_length), np.int32)
    return _zeros(batch_size) | {"items": window, "timestamps": window.copy(), "targets": window.copy(),
                                 "target_times": window.copy()}


def _sequence_serve(histories, starts, ends, events, max_length, bag_width):
    """The last T events, left-padded (events: the user's most recent items, right-aligned)."""
    return {"items": events[:, events.shape[1] - max_length:],
            "timestamps": last_events(histories.timestamps, starts, ends, max_length)}


register_kind(BatchKind("sequence", _sequence_train, _sequence_sample, _sequence_serve,
                        serve_span=lambda max_length: max_length))


# ----------------------------------------------------------------------------- bag of items


def _bag_train(split, sequences, config, log):
    bags = build_bags(split, config.max_bag)
    if bags["truncated"]:
        log(f"bags: {bags['truncated']:,} older training items cut by data.max_bag={config.max_bag}")
    return take_rows({"users": bags["users"], "bag": bags["bag"]}), bags


def _bag_sample(batch_size, max_length, max_bag=1, num_negatives=1, horizon=1):
    return _zeros(batch_size) | {"bag": np.zeros((batch_size, max(1, max_bag)), np.int32)}


def _bag_serve(histories, starts, ends, events, max_length, bag_width):
    """The L most recent distinct items of the whole history (events: the exclusion window)."""
    return {"bag": recent_distinct(events, bag_width)}


register_kind(BatchKind("bag", _bag_train, _bag_sample, _bag_serve,
                        eval_fields=("users", "bag", "exclude")))


# ----------------------------------------------------------------------------- (user, item) pairs


def _pairs_train(split, sequences, config, log):
    return pairs_with_negatives(training_pairs(split), split.log.num_items, config.num_negatives), None


def _pairs_sample(batch_size, max_length, max_bag=1, num_negatives=1, horizon=1):
    return _zeros(batch_size) | {"items": np.zeros(batch_size, np.int32),
                                 "negatives": np.zeros((batch_size, num_negatives), np.int32)}


register_kind(BatchKind("pairs", _pairs_train, _pairs_sample, lambda *args: {}, known_users_only=True,
                        eval_fields=("users", "exclude")))


# ----------------------------------------------------------------------------- series windows (forecasters)


def _series_train(split, sequences, config, log):
    return take_rows(sequences.train), None  # `stjax.data.pipeline.prepare_series` builds them


def _series_sample(batch_size, max_length, max_bag=1, num_negatives=1, horizon=1):
    return sample_windows(batch_size, max_length, horizon)


# Windows of a panel of daily series (`stjax.data.series`): a forecaster reads them and ranks no
# items, so it serves nothing through `stjax recommend`.
register_kind(BatchKind("series", _series_train, _series_sample, None,
                        eval_fields=("users", "inputs", "observed", "times", "target_times", "lags", "targets")))


# ----------------------------------------------------------------------------- temporal neighbours


def _no_builder(split, sequences, config, log):
    raise ValueError("batch kind 'temporal_neighbours' has no batch builder yet")


def _no_sample(batch_size, max_length, max_bag=1, num_negatives=1, horizon=1):
    raise ValueError("no sample batch for batch kind 'temporal_neighbours'")


# Declared for models that would read sampled temporal neighbourhoods as batches; the graph
# models of today read them from their context instead, so no model uses this kind yet.
register_kind(BatchKind("temporal_neighbours", _no_builder, _no_sample))

BATCH_KINDS = tuple(KINDS)


def sample_batch(kind: str, batch_size: int, max_length: int, max_bag: int = 1, num_negatives: int = 1,
                 horizon: int = 1) -> dict:
    """An all-padding training batch of a kind's shapes (for `init`, which reads shapes only)."""
    return get_kind(kind).sample(batch_size, max_length, max_bag, num_negatives, horizon)


def train_source(kind: str, split, sequences, config, log) -> tuple[BatchBuilder, dict | None]:
    """The training batches of a kind: (builder, bags or None)."""
    return get_kind(kind).train(split, sequences, config, log)


def serving_batch(kind: str, histories, start: int, batch_size: int, max_length: int, exclude_width: int,
                  bag_width: int = 1) -> dict:
    """The batch of users start..start+batch_size of `histories` (the last batch padded with empty
    users): users int32[B], exclude int32[B, S] (every history event, 0 = none) and the kind's own
    fields (`BatchKind.serve`)."""
    record = get_kind(kind)
    stop = min(start + batch_size, len(histories))
    pad = batch_size - (stop - start)
    starts = np.pad(histories.offsets[start:stop], (0, pad))
    ends = np.pad(histories.offsets[start + 1:stop + 1], (0, pad))
    span = max(exclude_width, record.serve_span(max_length))
    events = last_events(histories.items, starts, ends, span)  # [B, max(S, T)]
    batch = {"users": np.pad(histories.user_ids[start:stop], (0, pad)),
             "exclude": events[:, span - exclude_width:]}
    return batch | record.serve(histories, starts, ends, events, max_length, bag_width)
