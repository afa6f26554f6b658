"""Padded fixed-length sequence batches and a resumable, seeded batch iterator.

Sequences are LEFT-padded with item 0: the most recent event is always at position T-1,
so a model reads its next-item query at the last position. Times are int32 seconds since
`time_origin` (the earliest event of the log), 0 on padding. Every batch has the same
shapes: the last batch of an epoch is filled with padding rows whose `weights` are 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from stjax.data.splits import TEST, TRAIN, VALID, Split


class SequenceBatch(NamedTuple):
    """Training batch: the loss is taken at every position where targets > 0.

    users: int32[B]; items, timestamps, targets: int32[B, T]; target_times: int32[B, T], the time
    of each target (0 = none); weights: float32[B]
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    targets: np.ndarray
    target_times: np.ndarray
    weights: np.ndarray


class EvalBatch(NamedTuple):
    """Evaluation batch: up to M targets per user, scored against all items.

    users: int32[B]; items, timestamps: int32[B, T] (the most recent history, left-padded);
    targets: int32[B, M] (0 = none; M = 1 for leave-one-out); target_timestamps: int32[B] (time
    of the first target); exclude: int32[B, S] history items to mask, targets excepted (0 = none);
    bag: int32[B, L] the history as a set of items (bag-of-items models only); weights: float32[B]
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
    """Fixed-length training windows and evaluation examples built from a split.

    train: dict of arrays with leading axis [examples]; valid / test: EvalBatch-shaped dicts.
    about: {"valid": ..., "test": ...}, what each evaluation row is about, kept on the host for
    breakdowns of accuracy (never part of a batch): see `ABOUT`.
    """

    train: dict
    valid: dict
    test: dict
    max_length: int
    num_items: int
    num_users: int
    time_origin: int
    about: dict = dataclasses.field(default_factory=dict)


# What an evaluation row is about (`SequenceData.about[part]`), one value per row:
ABOUT = {
    "history_length": "the user's events before the targets (all of them, not only the model's window)",
    "gap_seconds": "seconds from the user's last history event to the first target (fold-in rows: input and targets interleave in time, so it may be negative)",
    "revisit": "the share of the row's targets that are in the user's history (revisits of an item or place)",
    "region": "code of the first target event's region (`regions`: the names; 0 = unknown)",
    "latitude": "latitude of the first target event (MovieLens: the user's home; NaN when unknown)",
    "longitude": "longitude of the first target event (NaN when unknown)",
}


def relative_times(log) -> tuple[np.ndarray, int]:
    """int32 seconds since the earliest event, and that origin."""
    origin = int(log.timestamp.min()) if len(log) else 0
    if len(log) and int(log.timestamp.max()) - origin >= 2**31:
        raise ValueError("the log spans more than 68 years; int32 relative times would overflow")
    return np.subtract(log.timestamp, origin, dtype=np.int64).astype(np.int32), origin


def build_sequences(split: Split, max_length: int, window: str = "last", max_targets: int = 0,
                    fold_in_fraction: float = 0.8, seed: int = 0, bags: bool = False) -> SequenceData:
    """Training windows of the TRAIN part and evaluation examples of VALID and TEST.

    window: 'last' takes each user's last max_length+1 training events (SASRec); 'all'
    covers the whole training sequence with windows that overlap by one event.
    Evaluation: see `eval_examples` (histories before the targets) or, for a held-out-user
    split, `fold_in_examples`. bags: also give each example its history as a `bag`.
    """
    log = split.log
    times, origin = relative_times(log)
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
        # When each target happened: the time at which its recommendation is asked for.
        "target_times": np.where(seq_items[:, :-1] > 0, seq_times[:, 1:], 0).astype(np.int32),
    }
    data = {}
    for name, part in (("valid", VALID), ("test", TEST)):
        if split.method == "held_out_users":
            data[name] = fold_in_examples(log, split.part == part, times, max_length, fold_in_fraction,
                                          seed + part, max_targets, bags)
        else:
            # History: every earlier event of the user, whatever its part (RecBole's protocol).
            data[name] = eval_examples(log, split.part == part, times, max_length, max_targets, bags)
    about = {name: data[name].pop("about") | {"regions": log.region_vocab.tokens.astype(str)} for name in data}
    # One width per field for both parts: the evaluation step then compiles once.
    for key in ("exclude", "targets", "bag"):
        if key in data["valid"]:
            width = max(data["valid"][key].shape[1], data["test"][key].shape[1])
            for examples in data.values():
                examples[key] = np.pad(examples[key], ((0, 0), (0, width - examples[key].shape[1])))
    return SequenceData(train, data["valid"], data["test"], max_length, log.num_items, log.num_users, origin, about)


def _group_bounds(group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a sorted key array: (keys, start, end) of each run of equal keys."""
    if len(group) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    change = np.flatnonzero(np.diff(group)) + 1
    start = np.concatenate([[0], change])
    end = np.concatenate([change, [len(group)]])
    return group[start], start, end


def _ragged_to_padded(values: np.ndarray, start: np.ndarray, end: np.ndarray, width: int,
                      align: str = "right") -> np.ndarray:
    """values[start[r]:end[r]] as rows of width `width`, padded with 0. align='right' keeps the
    last `width` entries and pads on the left (the most recent event at the end); 'left' keeps the
    first `width` and pads on the right."""
    lengths = np.minimum(end - start, width)
    offsets = np.arange(width)[None, :]
    if align == "right":
        index = end[:, None] - width + offsets
        valid = offsets >= width - lengths[:, None]
    else:
        index = start[:, None] + offsets
        valid = offsets < lengths[:, None]
    if len(values) == 0:
        return np.zeros((len(start), width), values.dtype)
    return np.where(valid, values[np.clip(index, 0, len(values) - 1)], 0)


def _examples_from_events(log, times: np.ndarray, history: np.ndarray, target: np.ndarray, max_length: int,
                          max_targets: int, bags: bool) -> dict:
    """Evaluation rows from boolean event masks (log sorted by user, time): one row per user with at
    least one history event and one target; targets are the user's distinct target items in time
    order (the first `max_targets` when > 0)."""
    items = np.asarray(log.item, dtype=np.int32)
    user = log.user
    has_target = np.zeros(len(log.user_vocab) + 1, bool)
    has_history = np.zeros_like(has_target)
    has_target[user[target]] = True
    has_history[user[history]] = True
    keep = (has_target & has_history)[user]
    history, target = history & keep, target & keep

    h_rows = np.flatnonzero(history)
    users, h_start, h_end = _group_bounds(user[h_rows])
    # Distinct target items per user, in order of first appearance.
    t_rows = np.flatnonzero(target)
    key = user[t_rows].astype(np.int64) * (log.num_items + 1) + items[t_rows]
    _, first = np.unique(key, return_index=True)
    t_rows = t_rows[np.sort(first)]
    _, t_start, t_end = _group_bounds(user[t_rows])
    width = int((t_end - t_start).max(initial=1))
    if max_targets:
        width = min(width, max_targets)
    targets = _ragged_to_padded(items[t_rows], t_start, t_end, width, align="left").astype(np.int32)

    h_items, h_times = items[h_rows], times[h_rows]
    longest = int((h_end - h_start).max(initial=1))
    history_items = _ragged_to_padded(h_items, h_start, h_end, longest)
    # Mask history items except the row's targets (a repeated item may be recommended again).
    row_key = np.arange(len(users), dtype=np.int64)[:, None] * (log.num_items + 1)
    is_target = np.isin(row_key + history_items, (row_key + targets)[targets > 0])
    exclude = np.where(is_target, 0, history_items).astype(np.int32)
    out = {
        "users": users.astype(np.int32),
        "items": _ragged_to_padded(h_items, h_start, h_end, max_length).astype(np.int32),
        "timestamps": _ragged_to_padded(h_times, h_start, h_end, max_length).astype(np.int32),
        "targets": targets,
        "target_timestamps": times[t_rows[t_start]].astype(np.int32),
        "exclude": exclude,
    }
    if bags:
        out["bag"] = _distinct_rows(history_items)
    first_target = t_rows[t_start]
    last_history = h_rows[h_end - 1]
    in_history = is_target_of(targets, history_items, row_key)
    out["about"] = {
        "history_length": (h_end - h_start).astype(np.int32),
        "gap_seconds": (times[first_target].astype(np.int64) - times[last_history]).astype(np.int64),
        "revisit": (in_history.sum(axis=1) / np.maximum((targets > 0).sum(axis=1), 1)).astype(np.float32),
        "region": np.asarray(log.region[first_target], np.int32),
        "latitude": np.asarray(log.latitude[first_target], np.float32),
        "longitude": np.asarray(log.longitude[first_target], np.float32),
    }
    return out


def is_target_of(targets: np.ndarray, history_items: np.ndarray, row_key: np.ndarray) -> np.ndarray:
    """bool[R, M]: target j of row r is one of the row's history items (padding 0 never is)."""
    return np.isin(row_key + targets, (row_key + history_items)[history_items > 0]) & (targets > 0)


def _distinct_rows(rows: np.ndarray) -> np.ndarray:
    """Each row's distinct nonzero values, padded with 0. int32[R, L]."""
    ordered = np.sort(rows, axis=1)
    duplicate = np.zeros_like(ordered, bool)
    duplicate[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    ordered = -np.sort(-np.where(duplicate, 0, ordered), axis=1)  # nonzero first
    width = int((ordered > 0).sum(axis=1).max(initial=1))
    return ordered[:, :max(width, 1)].astype(np.int32)


def eval_examples(log, target: np.ndarray, times: np.ndarray, max_length: int, max_targets: int = 0,
                  bags: bool = False) -> dict:
    """Rows for the users with events in `target` (bool[events]): the history is every event of the
    user before its first target event; the targets are its distinct target items (leave-one-out:
    exactly one)."""
    position = np.arange(len(log))
    first_target = np.full(len(log.user_vocab) + 1, len(log))
    np.minimum.at(first_target, log.user[target], position[target])
    history = position < first_target[log.user]
    return _examples_from_events(log, times, history, target, max_length, max_targets, bags)


def fold_in_examples(log, held_out: np.ndarray, times: np.ndarray, max_length: int, fraction: float = 0.8,
                     seed: int = 0, max_targets: int = 0, bags: bool = False) -> dict:
    """The fold-in protocol for held-out users (Liang et al., Mult-VAE, WWW 2018): a random
    `fraction` of each held-out user's events (fixed seed) is the input, kept in time order; the
    rest are the targets. held_out: bool[events]."""
    rows = np.flatnonzero(held_out)
    draws = np.random.default_rng(seed).random(len(rows))
    _, start, end = _group_bounds(log.user[rows])
    counts = end - start
    # Per user: the ceil(fraction * n) events with the smallest draws are input, leaving at least
    # one target from two events on.
    rank = np.empty(len(rows), np.int64)
    order = np.lexsort((draws, log.user[rows]))
    rank[order] = np.arange(len(rows)) - np.repeat(start, counts)
    inputs = np.minimum(np.ceil(fraction * counts).astype(np.int64), np.maximum(counts - 1, 1))
    is_input = rank < np.repeat(inputs, counts)
    history = np.zeros(len(log), bool)
    target = np.zeros(len(log), bool)
    history[rows[is_input]] = True
    target[rows[~is_input]] = True
    return _examples_from_events(log, times, history, target, max_length, max_targets, bags)


def build_bags(split: Split, max_bag: int = 0) -> dict:
    """Each user's distinct training items: users int32[U], bag int32[U, L] (0-padded), and
    `truncated`, the count of items cut when max_bag > 0 keeps each user's most recent ones."""
    rows = np.flatnonzero(split.part == TRAIN)
    log = split.log
    user, item = log.user[rows], np.asarray(log.item[rows], np.int32)
    key = user.astype(np.int64) * (log.num_items + 1) + item
    _, last_from_end = np.unique(key[::-1], return_index=True)
    keep = np.sort(len(key) - 1 - last_from_end)  # the last event of each (user, item), in time order
    users, start, end = _group_bounds(user[keep])
    longest = int((end - start).max(initial=1))
    width = min(longest, max_bag) if max_bag else longest
    bag = _ragged_to_padded(item[keep], start, end, width).astype(np.int32)
    return {"users": users.astype(np.int32), "bag": bag, "truncated": int(np.maximum(end - start - width, 0).sum())}


def training_pairs(split: Split) -> dict:
    """Every training event as a (user, item) pair: users, items int32[events]."""
    rows = np.flatnonzero(split.part == TRAIN)
    return {"users": split.log.user[rows].astype(np.int32), "items": np.asarray(split.log.item[rows], np.int32)}


@dataclasses.dataclass(frozen=True)
class BatchBuilder:
    """`make_batch(rows, rng) -> dict` builds the examples `rows` (int[b], b <= batch size) with
    `rng`, a NumPy generator seeded by (seed, epoch, step, block): resume replays it exactly."""

    num_rows: int
    make_batch: Callable[[np.ndarray, np.random.Generator], dict]


def take_rows(arrays: dict) -> BatchBuilder:
    """Batches that are rows of fixed arrays (sequence windows, bags)."""
    return BatchBuilder(len(next(iter(arrays.values()))), lambda rows, rng: {k: v[rows] for k, v in arrays.items()})


def pairs_with_negatives(pairs: dict, num_items: int, num_negatives: int) -> BatchBuilder:
    """(user, positive item) pairs with `num_negatives` uniform negatives from 1..I each."""

    def make_batch(rows, rng):
        return {"users": pairs["users"][rows], "items": pairs["items"][rows],
                "negatives": rng.integers(1, num_items + 1, (len(rows), num_negatives), dtype=np.int32)}

    return BatchBuilder(len(pairs["users"]), make_batch)


@dataclasses.dataclass
class IteratorState:
    """Where an iterator is: batch `step` of epoch `epoch` comes next."""

    epoch: int = 0
    step: int = 0


class BatchIterator:
    """Seeded, resumable batches of fixed size, each process building its own share.

    Global batch k of epoch e is rows order_e[k*B:(k+1)*B], order_e a permutation drawn from
    `default_rng([seed, e])`. It is built as `blocks` equal blocks of B/blocks rows (each padded
    with weight 0), block j with `default_rng([seed, e, k, j])`; process p of P builds blocks
    p*blocks/P .. (p+1)*blocks/P - 1. So a batch depends only on (seed, e, k, blocks), never on
    the number of processes that build it: a run on 2 processes draws the same negatives as one
    on 1 process with blocks=2, and a run resumes on any process count that divides its
    `blocks` (kept in the iterator's state). blocks=0: the process count.
    source: a dict of arrays (batches are their rows) or a `BatchBuilder`.
    """

    def __init__(self, source, batch_size: int, seed: int = 0, shuffle: bool = True, process_index: int = 0,
                 process_count: int = 1, blocks: int = 0):
        self.builder = source if isinstance(source, BatchBuilder) else take_rows(source)
        self.batch_size = batch_size
        self.process_index, self.process_count = process_index, process_count
        self.set_blocks(blocks or process_count)
        self.seed = seed
        self.shuffle = shuffle
        self.num_examples = self.builder.num_rows
        self.steps_per_epoch = max(1, -(-self.num_examples // batch_size))
        self.state = IteratorState()

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_examples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def set_blocks(self, blocks: int) -> None:
        if self.batch_size % blocks:
            raise ValueError(f"batch size {self.batch_size} is not divisible into {blocks} blocks")
        if blocks % self.process_count:
            raise ValueError(f"the run's batches are built in {blocks} blocks, which {self.process_count} "
                             f"processes cannot share; run on a number of processes that divides {blocks}")
        self.blocks = blocks
        self.local_batch_size = self.batch_size // self.process_count

    def batch(self, epoch: int, step: int) -> dict:
        rows = self.order(epoch)[step * self.batch_size:(step + 1) * self.batch_size]
        size = self.batch_size // self.blocks
        mine = self.blocks // self.process_count
        parts = []
        for block in range(self.process_index * mine, (self.process_index + 1) * mine):
            rng = np.random.default_rng([self.seed, epoch, step, block])
            parts.append(pad_batch(self.builder.make_batch(rows[block * size:(block + 1) * size], rng), size))
        if len(parts) == 1:
            return parts[0]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = self.batch(self.state.epoch, self.state.step)
        self.state.step += 1
        if self.state.step >= self.steps_per_epoch:
            self.state = IteratorState(self.state.epoch + 1, 0)
        return batch

    def get_state(self) -> dict:
        return dataclasses.asdict(self.state) | {"blocks": self.blocks}

    def set_state(self, state: dict) -> None:
        """Restores a position (and the blocks the run's batches are built in; 1 for a state saved
        before blocks existed, which is how those runs built them)."""
        self.set_blocks(int(state.get("blocks", 1)))
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


def user_histories(log, times: np.ndarray) -> dict:
    """Every user's events in time order as flat arrays: offsets int64[U+2] (user u's events are
    offsets[u]:offsets[u+1]), items int32[E], timestamps int32[E] (relative), values float32[E]
    (ratings or weights; NaN where the data have none). Log sorted by user."""
    counts = np.bincount(log.user, minlength=len(log.user_vocab) + 1)
    return {"offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "items": np.asarray(log.item, np.int32), "timestamps": np.asarray(times, np.int32),
            "values": np.asarray(log.value, np.float32)}
