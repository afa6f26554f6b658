"""Padded fixed-length sequence batches and a resumable, seeded batch iterator.

Sequences are LEFT-padded with item 0: the most recent event is always at position T-1,
so a model reads its next-item query at the last position. Times are int32 seconds since
`time_origin` (the earliest event of the log), 0 on padding. Every batch has the same
shapes: the last batch of an epoch is filled with padding rows whose `weights` are 0.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from stjax.data.splits import TRAIN, Split
from stjax.data.textio import release_memory


class SequenceBatch(NamedTuple):
    """Training batch: the loss is taken at every position where targets > 0.

    users: int32[B]; items, timestamps, targets: int32[B, T]; weights: float32[B]
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    targets: np.ndarray
    weights: np.ndarray


class EvalBatch(NamedTuple):
    """Evaluation batch: one target per row, scored against all items.

    users: int32[B]; items, timestamps: int32[B, T] (history); targets: int32[B];
    target_timestamps: int32[B]; exclude: int32[B, S] items to mask (0 = none); weights: float32[B]
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    targets: np.ndarray
    target_timestamps: np.ndarray
    exclude: np.ndarray
    weights: np.ndarray


def _user_starts(user: np.ndarray) -> np.ndarray:
    """Index of the first event of each event's user (log sorted by user)."""
    n = len(user)
    is_first = np.ones(n, dtype=bool)
    is_first[1:] = user[1:] != user[:-1]
    first_index = np.flatnonzero(is_first).astype(np.int32 if n < 2**31 else np.int64)
    group = np.cumsum(is_first, dtype=np.int32 if n < 2**31 else np.int64)
    group -= 1
    return first_index[group]


def _windows(values: np.ndarray, ends: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """values[end-length+1 .. end] per row, left-padded with 0 before `starts`. -> [rows, length]"""
    offsets = np.arange(-length + 1, 1)
    index = ends[:, None] + offsets[None, :]
    valid = index >= starts[:, None]
    return np.where(valid, values[np.clip(index, 0, None)], 0)


@dataclasses.dataclass
class SequenceData:
    """Fixed-length training and evaluation examples built from a split.

    train: dict of arrays with leading axis [examples]; valid / test: EvalBatch-shaped dicts.
    """

    train: dict
    valid: dict
    test: dict
    max_length: int
    num_items: int
    num_users: int
    time_origin: int


def build_sequences(split: Split, max_length: int, window: str = "last") -> SequenceData:
    """Training windows of the TRAIN part and evaluation examples of VALID and TEST.

    window: 'last' takes each user's last max_length+1 training events (SASRec); 'all'
    covers the whole training sequence with windows that overlap by one event.
    """
    log = split.log
    release_memory()
    origin = int(log.timestamp.min()) if len(log) else 0
    if len(log) and int(log.timestamp.max()) - origin >= 2**31:
        raise ValueError("the log spans more than 68 years; int32 relative times would overflow")
    times = np.subtract(log.timestamp, origin, dtype=np.int64).astype(np.int32)
    items = np.asarray(log.item, dtype=np.int32)

    # Training: windows over the train events only (they are a prefix of each user's events
    # for leave-one-out; for other splits the train events are gathered first).
    train_rows = np.flatnonzero(split.part == TRAIN).astype(np.int32 if len(log) < 2**31 else np.int64)
    t_user = log.user[train_rows]
    t_items, t_times = items[train_rows], times[train_rows]
    starts = _user_starts(t_user)
    is_last = np.ones(len(t_user), dtype=bool)
    is_last[:-1] = t_user[1:] != t_user[:-1]
    last = np.flatnonzero(is_last)
    if window == "last":
        ends = last
    elif window == "all":
        ends_list = []
        for end, start in zip(last, starts[last]):
            ends_list.extend(range(end, start, -max_length))
        ends = np.sort(np.asarray(ends_list, dtype=np.int64))
    else:
        raise ValueError(f"unknown window {window!r}; expected 'last' or 'all'")
    ends = ends[ends > starts[ends]]  # a user needs two training events for one target
    seq_items = _windows(t_items, ends, starts[ends], max_length + 1)
    seq_times = _windows(t_times, ends, starts[ends], max_length + 1)
    train = {
        "users": t_user[ends].astype(np.int32),
        "items": seq_items[:, :-1],
        "timestamps": seq_times[:, :-1],
        "targets": np.where(seq_items[:, :-1] > 0, seq_items[:, 1:], 0).astype(np.int32),
    }
    all_starts = _user_starts(log.user)
    data = {}
    for name, part in (("valid", 1), ("test", 2)):
        rows = np.flatnonzero(split.part == part)
        history_end = rows - 1
        has_history = history_end >= all_starts[rows]
        rows, history_end = rows[has_history], history_end[has_history]
        data[name] = {
            "users": log.user[rows].astype(np.int32),
            "items": _windows(items, history_end, all_starts[rows], max_length),
            "timestamps": _windows(times, history_end, all_starts[rows], max_length),
            "targets": items[rows],
            "target_timestamps": times[rows],
            "exclude": _exclusions(items, all_starts[rows], rows),
        }
    # One exclusion width for both parts: the evaluation step then compiles once.
    width = max(data["valid"]["exclude"].shape[1], data["test"]["exclude"].shape[1])
    for part in data.values():
        extra = width - part["exclude"].shape[1]
        part["exclude"] = np.pad(part["exclude"], ((0, 0), (0, extra)))
    return SequenceData(train, data["valid"], data["test"], max_length, log.num_items, log.num_users, origin)


def _exclusions(items: np.ndarray, starts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Items of each target's whole history except the target item itself. -> int32[rows, S]"""
    lengths = targets - starts
    width = int(lengths.max(initial=1)) or 1
    out = _windows(items, targets - 1, starts, width)
    out = np.where(out == items[targets][:, None], 0, out)
    return out.astype(np.int32)


@dataclasses.dataclass
class IteratorState:
    """Where an iterator is: batch `step` of epoch `epoch` comes next."""

    epoch: int = 0
    step: int = 0


class BatchIterator:
    """Seeded, resumable batches of fixed size over examples with a leading axis.

    Batch k of epoch e depends only on (seed, e, k): the order of epoch e is a permutation
    drawn from `default_rng([seed, e])`, so restoring a saved `IteratorState` replays exactly.
    """

    def __init__(self, arrays: dict, batch_size: int, seed: int = 0, shuffle: bool = True):
        self.arrays = arrays
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.num_examples = len(next(iter(arrays.values())))
        self.steps_per_epoch = max(1, -(-self.num_examples // batch_size))
        self.state = IteratorState()

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_examples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def batch(self, epoch: int, step: int) -> dict:
        index = self.order(epoch)[step * self.batch_size:(step + 1) * self.batch_size]
        return pad_batch({k: v[index] for k, v in self.arrays.items()}, self.batch_size)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = self.batch(self.state.epoch, self.state.step)
        self.state.step += 1
        if self.state.step >= self.steps_per_epoch:
            self.state = IteratorState(self.state.epoch + 1, 0)
        return batch

    def get_state(self) -> dict:
        return dataclasses.asdict(self.state)

    def set_state(self, state: dict) -> None:
        self.state = IteratorState(int(state["epoch"]), int(state["step"]))


def pad_batch(arrays: dict, batch_size: int) -> dict:
    """Pads the leading axis to batch_size with zeros; adds `weights` (1 real, 0 padding)."""
    count = len(next(iter(arrays.values())))
    out = {}
    for key, value in arrays.items():
        if count < batch_size:
            pad = np.zeros((batch_size - count, *value.shape[1:]), dtype=value.dtype)
            value = np.concatenate([value, pad])
        out[key] = value
    weights = np.zeros(batch_size, dtype=np.float32)
    weights[:count] = 1.0
    out["weights"] = weights
    return out


def eval_batches(examples: dict, batch_size: int):
    """Fixed-size batches over evaluation examples in order (last one padded)."""
    count = len(examples["targets"])
    for start in range(0, count, batch_size):
        yield pad_batch({k: v[start:start + batch_size] for k, v in examples.items()}, batch_size)
