"""`update_run(workdir, events)`: a trained run continued on new events (`stjax update`).

Nothing is retrained from scratch. The vocabularies grow: old users and items keep their index,
new ones are appended in the order they first appear in the new events. Every parameter row of an
old user or item keeps its value and its optimizer moments; a new row gets what the model's own
init gives it on the new sizes (run's seed), its moments zero (`grow_state`). The step count,
Adam's moments and count, and the PRNG stream (seed, step) go on from the run's last checkpoint
step; the learning-rate schedule restarts over the update's steps (a warm restart: the run's own
schedule has decayed), its warm-up shortened to at most a tenth of them.

Data. The union is the run's log (histories.npz, every event) plus the new events, split as the
run's config says: leave_one_out and temporal are recomputed on the union; held_out_users keeps
each old user's part and trains every new user. The update trains on the events new to training,
the union's TRAIN events that were not TRAIN in the run (the new events, and old validation or
test events that have become history), as targets, with the whole union as their context: a
sequence window keeps every earlier event as input and takes only those events as targets
(`fresh_windows`); a bag model trains the bags of the users who have such events; a pairs model
those pairs. The run's k-core and minimum-length filters are not applied to new events (they would
drop old rows); min_value and dedup are.

Evaluation: the union's validation part picks the checkpoint (the run's model on the new sizes,
step S0, is the first candidate, so an update never ends worse on it); `eval_events`, the period
after the new events, is reported before and after (never used to choose).

The run folder afterwards is an ordinary run on the union (config.json unchanged; run.json,
vocab.json, histories.npz, context.npz, results.json, test_rows.npz and checkpoints/ replaced),
plus `updates.jsonl` (a line per update) and `updates/split.npz` (the union's split, which
`stjax evaluate` reads back: `updated_run`). The run's checkpoints are deleted, or kept under
`updates/<n>/previous/` with `keep_previous`. An update trains in `<workdir>/.update/` and
replaces the run's files only once it has finished.

Models: those with user or item tables (a leading or trailing axis of U+1, I, I+1 or the padded
item rows, plus special rows such as BERT4Rec's [mask]); a model's context (graphs, EASE's closed
form) is recomputed on the union. Refused: forecasters (series batches) and parameters whose shape
changes in a way that is neither.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
import optax

from stjax import models
from stjax.config import ConfigError, to_json
from stjax.data.batching import (
    BatchIterator,
    build_sequences,
    eval_examples,
    pairs_with_negatives,
    take_rows,
)
from stjax.data.errors import RepairReport
from stjax.data.kinds import train_source
from stjax.data.pipeline import Prepared, parse_columns, resolve
from stjax.data.preprocess import keep_min_value
from stjax.data.splits import TRAIN, Split, make_split
from stjax.data.table import InteractionLog, Vocab
from stjax.models.base import DataInfo
from stjax.runs import RunError, RunFolder
from stjax.train.build import Model, Run, build_model, make_evaluators
from stjax.train.loop import Best, fit
from stjax.train.state import TrainState, dict_keys

UPDATABLE_KINDS = ("sequence", "bag", "pairs")
RECOMPUTED_SPLITS = ("leave_one_out", "temporal")
MAX_SPECIAL_ROWS = 2  # item rows above I a model may add (BERT4Rec's [mask]: one)


class UpdateError(RunError):
    """An update that cannot be made (a model or split that cannot grow, new events before the run,
    nothing new): one line, exit 2."""


# ----------------------------------------------------------------------------- vocabularies and the union


def grow_vocab(vocab: Vocab, new: Vocab, used: np.ndarray | None = None) -> tuple[Vocab, np.ndarray]:
    """`vocab` with the tokens of `new` it lacks appended in `new`'s order (a loader's: first appearance
    in the file), and where each of `new`'s indices lands: int32[len(new)] (0 -> 0). used: bool[len(new)],
    the tokens that have events (the others are not added and land on 0)."""
    index = {str(token): code for code, token in enumerate(vocab.tokens) if code > 0}
    tokens = list(vocab.tokens)
    where = np.zeros(len(new), np.int32)
    for code, token in enumerate(new.tokens[1:], 1):
        if used is not None and not used[code]:
            continue
        key = str(token)
        if key not in index:
            index[key] = len(tokens)
            tokens.append(key)
        where[code] = index[key]
    return Vocab(np.asarray(tokens, dtype=object)), where


def load_events(events, format: str | None = None, columns=None) -> tuple[InteractionLog, str]:
    """New events: an `InteractionLog` as it is, or a file in any format stjax reads (`--format`,
    `--columns` as for `stjax data validate`). Returns (log, where they came from)."""
    if isinstance(events, InteractionLog):
        return events, f"<{events.name}>"
    from stjax.data.formats import load

    try:
        mapping = parse_columns(columns)
    except ValueError as err:
        raise UpdateError(str(err).replace("data.columns:", "--columns:", 1)) from None
    loaded = load(events, format or None, columns=mapping)
    if loaded.log is None:
        raise UpdateError(f"{events}: an edge list holds no events to update on")
    return loaded.log, str(events)


def union_log(old: InteractionLog, new: InteractionLog) -> tuple[InteractionLog, np.ndarray, np.ndarray]:
    """The run's log and the new events in one log sorted by (user, time), old events first among
    equals, on grown vocabularies. Returns (union, is_new bool[E], order int[E]: union event e is
    event order[e] of old events followed by new ones). Side tables are not kept."""
    def grow(name):
        vocab = getattr(new, f"{name}_vocab")
        used = np.bincount(getattr(new, name), minlength=len(vocab)) > 0
        return grow_vocab(getattr(old, f"{name}_vocab"), vocab, used)

    (user_vocab, users), (item_vocab, items) = grow("user"), grow("item")
    (behaviour_vocab, behaviours), (region_vocab, regions) = grow("behaviour"), grow("region")
    columns = {
        "user": np.concatenate([old.user, users[new.user]]).astype(np.int32),
        "item": np.concatenate([old.item, items[new.item]]).astype(np.int32),
        "timestamp": np.concatenate([old.timestamp, new.timestamp]).astype(np.int64),
        "behaviour": np.concatenate([old.behaviour, behaviours[new.behaviour]]).astype(np.int8),
        "value": np.concatenate([old.value, new.value]).astype(np.float32),
        "latitude": np.concatenate([old.latitude, new.latitude]).astype(np.float32),
        "longitude": np.concatenate([old.longitude, new.longitude]).astype(np.float32),
        "region": np.concatenate([old.region, regions[new.region]]).astype(np.int32),
    }
    order = np.lexsort((columns["timestamp"], columns["user"]))  # stable: old before new at equal times
    union = InteractionLog(**{name: values[order] for name, values in columns.items()}, user_vocab=user_vocab,
                           item_vocab=item_vocab, behaviour_vocab=behaviour_vocab, region_vocab=region_vocab,
                           name=old.name)
    return union, order >= len(old), order


def clean_new_events(new: InteractionLog, data_config, report: RepairReport) -> InteractionLog:
    """The run's per-event filters on new events (min_value); k-core and min_length are not applied."""
    if float(data_config.min_value):
        try:
            new = keep_min_value(new, float(data_config.min_value), report)
        except ValueError as err:
            raise UpdateError(f"new events: {err}") from None
    return new


# ----------------------------------------------------------------------------- splits and training rows


def split_of(log: InteractionLog, config) -> Split:
    """The run's split of `log` (`data.split` with its fractions, seed and counts)."""
    data = config.data
    fractions = dict(valid_fraction=data.valid_fraction, test_fraction=data.test_fraction)
    extra = {"leave_one_out": {}, "temporal": fractions,
             "held_out_users": fractions | {"seed": data.seed, "valid_users": int(data.valid_users),
                                            "test_users": int(data.test_users)}}[data.split]
    return make_split(log, data.split, **extra)


def union_split(union: InteractionLog, old_part: np.ndarray, is_new: np.ndarray, method: str, config) -> Split:
    """The split of the union: recomputed for leave_one_out and temporal; for held_out_users each old
    user keeps its part (old_part: int8[E], the run's part of each union event, any value on new
    events) and new users train."""
    if method in RECOMPUTED_SPLITS:
        return split_of(union, config)
    part_of_user = np.full(len(union.user_vocab), TRAIN, np.int8)
    old_events = ~is_new
    part_of_user[union.user[old_events]] = old_part[old_events]
    return Split(union, part_of_user[union.user], method)


def _user_starts(user: np.ndarray) -> np.ndarray:
    """Index of each event's user's first event (events grouped by user)."""
    first = np.ones(len(user), bool)
    first[1:] = user[1:] != user[:-1]
    return np.flatnonzero(first)[np.cumsum(first) - 1]


def _windows(values: np.ndarray, ends: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """values[end-length+1 .. end] per row, 0 before the row's start. -> [rows, length]"""
    index = ends[:, None] + np.arange(-length + 1, 1)[None, :]
    return np.where(index >= starts[:, None], values[np.clip(index, 0, None)], 0)


def fresh_windows(split: Split, fresh: np.ndarray, max_length: int, window: str = "all") -> dict:
    """Sequence rows whose targets are the `fresh` events (bool[E] on split.log), every earlier TRAIN
    event of the user an input. window 'last': each user's last max_length + 1 TRAIN events (as the
    run's 'last' windows; fresh events before them are not targets); 'all': windows end at the user's
    latest fresh event not yet a target and step back by max_length, so that every fresh event with an
    earlier TRAIN event is a target exactly once. Same fields as `SequenceData.train`:
    users int32[R]; items, timestamps, targets, target_times int32[R, T]."""
    log = split.log
    origin = int(log.timestamp.min()) if len(log) else 0
    rows = np.flatnonzero(split.part == TRAIN)
    user, items = log.user[rows], np.asarray(log.item[rows], np.int32)
    times = (log.timestamp[rows] - origin).astype(np.int32)
    is_fresh = fresh[rows]
    starts = _user_starts(user)
    candidates = np.flatnonzero(is_fresh & (np.arange(len(rows)) > starts))  # a fresh event with an input
    if window == "last":  # each user's last window, if it holds a fresh target
        first = np.r_[True, user[1:] != user[:-1]]
        last_of_user = np.flatnonzero(np.r_[user[1:] != user[:-1], True])[np.cumsum(first) - 1]
        ends = np.unique(last_of_user[candidates])
    elif window == "all":
        ends_list = []
        bounds = np.flatnonzero(np.r_[True, user[candidates][1:] != user[candidates][:-1], True])
        for first_at, stop in zip(bounds[:-1], bounds[1:]):
            positions = candidates[first_at:stop]  # ascending, one user
            end_at = len(positions) - 1
            while end_at >= 0:
                end = positions[end_at]
                ends_list.append(end)
                end_at = np.searchsorted(positions, end - max_length, side="right") - 1
        ends = np.sort(np.asarray(ends_list, np.int64))
    else:
        raise ValueError(f"unknown window {window!r}; expected 'last' or 'all'")
    length = max_length + 1
    window_items = _windows(items, ends, starts[ends], length)
    window_times = _windows(times, ends, starts[ends], length)
    target = (_windows(is_fresh.astype(np.int8), ends, starts[ends], length)[:, 1:] > 0) & (window_items[:, :-1] > 0)
    keep = target.any(axis=1)  # 'last' windows whose fresh events lie before them have none
    return {"users": user[ends][keep].astype(np.int32), "items": window_items[keep, :-1].astype(np.int32),
            "timestamps": window_times[keep, :-1].astype(np.int32),
            "targets": np.where(target, window_items[:, 1:], 0)[keep].astype(np.int32),
            "target_times": np.where(target, window_times[:, 1:], 0)[keep].astype(np.int32)}


def fresh_source(kind: str, prepared: Prepared, fresh: np.ndarray, data_config):
    """The update's training rows (`BatchBuilder`) of a batch kind: see the module docstring."""
    split = prepared.split
    fresh_train = fresh & (split.part == TRAIN)
    if kind == "sequence":
        return take_rows(fresh_windows(split, fresh_train, int(data_config.max_length), data_config.window))
    if kind == "bag":
        has_fresh = np.zeros(len(split.log.user_vocab), bool)
        has_fresh[split.log.user[fresh_train]] = True
        keep = has_fresh[prepared.bags["users"]]
        return take_rows({"users": prepared.bags["users"][keep], "bag": prepared.bags["bag"][keep]})
    rows = np.flatnonzero(fresh_train)
    pairs = {"users": split.log.user[rows].astype(np.int32), "items": np.asarray(split.log.item[rows], np.int32)}
    return pairs_with_negatives(pairs, split.log.num_items, int(data_config.num_negatives))


def prepare_split(split: Split, config, batch_kind: str, log=print) -> Prepared:
    """A split log made ready as `stjax.data.pipeline.prepare` makes one (sequences, the batch kind's
    training rows and bags), for a log that comes from a run folder rather than from a source."""
    data = resolve(config.data)
    sequences = build_sequences(split, int(data.max_length), data.window, max_targets=int(data.max_targets),
                                fold_in_fraction=float(data.fold_in_fraction), seed=int(data.seed),
                                bags=batch_kind == "bag")
    source, bags = train_source(batch_kind, split, sequences, data, log)
    return Prepared(split.log, split, sequences, RepairReport(rows_read=len(split.log), kept=len(split.log)), {},
                    None, source, bags)


def following_period(prepared: Prepared, events: InteractionLog, config, batch_kind: str) -> tuple[Prepared, dict]:
    """`prepared` with its valid and test examples replaced by those of `events` (the period after the
    union): each user of the union with events there, the whole union history as input, their distinct
    items there as targets. Events of items or users the union does not know cannot be ranked and are
    counted. Returns (prepared, counts)."""
    union = prepared.log
    item_index = {str(token): code for code, token in enumerate(union.item_vocab.tokens) if code > 0}
    user_index = {str(token): code for code, token in enumerate(union.user_vocab.tokens) if code > 0}
    items = np.asarray([item_index.get(str(t), 0) for t in events.item_vocab.tokens], np.int32)[events.item]
    users = np.asarray([user_index.get(str(t), 0) for t in events.user_vocab.tokens], np.int32)[events.user]
    known = (items > 0) & (users > 0)
    counts = {"events": int(len(events)), "unknown_item_events": int((items == 0).sum()),
              "unknown_user_events": int(((users == 0) & (items > 0)).sum())}
    origin = int(prepared.sequences.time_origin)
    user = np.concatenate([union.user, users[known]])
    timestamp = np.concatenate([union.timestamp, events.timestamp[known]])
    order = np.lexsort((timestamp, user))
    target = (np.arange(len(user)) >= len(union))[order]
    pick = lambda old, new: np.concatenate([old, new[known]])[order]  # noqa: E731
    combined = dataclasses.replace(
        union, user=user[order].astype(np.int32), item=np.concatenate([union.item, items[known]])[order],
        timestamp=timestamp[order], behaviour=np.concatenate([union.behaviour, np.ones(int(known.sum()), np.int8)])[order],
        value=pick(union.value, events.value.astype(np.float32)),
        latitude=pick(union.latitude, events.latitude.astype(np.float32)),
        longitude=pick(union.longitude, events.longitude.astype(np.float32)),
        region=np.concatenate([union.region, np.zeros(int(known.sum()), np.int32)])[order])
    times = np.clip(combined.timestamp - origin, 0, 2**31 - 1).astype(np.int32)
    examples = eval_examples(combined, target, times, int(config.data.max_length), int(config.data.max_targets),
                             bags=batch_kind == "bag")
    about = examples.pop("about") | {"regions": union.region_vocab.tokens.astype(str)}
    counts["users"] = int(len(examples["users"]))
    sequences = dataclasses.replace(prepared.sequences, valid=examples, test=examples,
                                    about={"valid": about, "test": about})
    return dataclasses.replace(prepared, sequences=sequences), counts


# ----------------------------------------------------------------------------- growing the state


@dataclasses.dataclass(frozen=True)
class RowMap:
    """Where an axis's old entries go when it grows: old `source[k]` lands on new `target[k]`; the other
    new entries keep the fresh init (new users or items, padding rows of the sharded table)."""

    name: str
    old_size: int
    new_size: int
    source: np.ndarray
    target: np.ndarray


def row_maps(old: DataInfo, new: DataInfo) -> list[RowMap]:
    """Every layout of a user or item axis the models use: users (U+1 rows, row 0 padding), items
    (I columns, column j = item j+1), item rows (I+1: row 0 padding) and the item table
    (`DataInfo.table_rows(e)`: I+1 rows, e special rows above them that move up with I, padded to the
    shards)."""
    U0, U1, I0, I1 = old.num_users, new.num_users, old.num_items, new.num_items
    maps = [RowMap("users", U0 + 1, U1 + 1, np.arange(U0 + 1), np.arange(U0 + 1)),
            RowMap("items", I0, I1, np.arange(I0), np.arange(I0))]
    maps.append(RowMap("item rows", I0 + 1, I1 + 1, np.arange(I0 + 1), np.arange(I0 + 1)))
    for extra in range(MAX_SPECIAL_ROWS + 1):  # `DataInfo.table_rows(extra)`
        source = np.concatenate([np.arange(I0 + 1), I0 + 1 + np.arange(extra)])
        target = np.concatenate([np.arange(I0 + 1), I1 + 1 + np.arange(extra)])
        name = "item table" + (f" + {extra} special rows" if extra else "")
        maps.append(RowMap(name, old.table_rows(extra), new.table_rows(extra), source, target))
    return maps


def resolve_axis(maps: list[RowMap], old_size: int, new_size: int, logical: str | None, where: str) -> RowMap:
    """The one layout of an axis that grew from old_size to new_size. An axis named `vocab` is an item
    axis. Among item layouts that fit, the one with the most special rows wins (moving a shard-padding
    row is harmless; leaving a special row behind is not); a user and an item layout that both fit
    with different maps are ambiguous (UpdateError)."""
    fits = [m for m in maps if m.old_size == old_size and m.new_size == new_size]
    if logical == "vocab":
        fits = [m for m in fits if m.name != "users"]
    distinct: list[RowMap] = []
    for m in sorted(fits, key=lambda m: -len(m.source)):
        if not any(len(m.source) == len(d.source) and np.array_equal(m.source, d.source)
                   and np.array_equal(m.target, d.target) for d in distinct):
            distinct.append(m)
    if not distinct:
        raise UpdateError(f"{where}: an axis of {old_size} entries on the run's sizes has {new_size} on the new "
                          f"ones, which is neither a user nor an item axis; this model cannot be updated")
    users = [m for m in distinct if m.name == "users"]
    if users and len(distinct) > 1:
        raise UpdateError(f"{where}: an axis of {old_size} -> {new_size} entries fits both the user table and an "
                          f"item table; name the item axis 'vocab' (stjax.models.shared.item_embedding)")
    return distinct[0]


def grow_leaf(old: np.ndarray, fresh: np.ndarray, maps: list[RowMap], names: tuple, where: str) -> np.ndarray:
    """`fresh` with `old`'s entries copied in along every axis (an axis that kept its size: as it is)."""
    old, out = np.asarray(old), np.array(fresh, copy=True)
    if old.shape == out.shape:
        return old.copy()
    if old.ndim != out.ndim:
        raise UpdateError(f"{where}: {old.ndim} axes on the run's sizes, {out.ndim} on the new ones")
    sources, targets = [], []
    for axis, (a, b) in enumerate(zip(old.shape, out.shape)):
        if a == b:
            sources.append(np.arange(a))
            targets.append(np.arange(a))
            continue
        found = resolve_axis(maps, a, b, names[axis] if axis < len(names) else None, f"{where} axis {axis}")
        sources.append(found.source)
        targets.append(found.target)
    out[np.ix_(*targets)] = old[np.ix_(*sources)]
    return out


def restart_schedules(opt_state):
    """Learning-rate schedule counters set to 0 (a warm restart); moments and Adam's count stay."""
    def reset(node):
        if isinstance(node, optax.ScaleByScheduleState):
            return node._replace(count=np.zeros_like(np.asarray(node.count)))
        return node

    return jax.tree_util.tree_map(reset, opt_state, is_leaf=lambda node: isinstance(node, optax.ScaleByScheduleState))


def grow_state(old_state: TrainState, fresh_state: TrainState, old: DataInfo, new: DataInfo, logical,
               model_name: str) -> TrainState:
    """The run's state on the new sizes: every parameter and optimizer-state leaf that mirrors one
    (Adam's mu and nu) keeps its old entries (`row_maps`); new entries come from `fresh_state` (the
    model's init on the new sizes; zero moments). Host arrays (NumPy); the step is the old one.
    logical: the parameters' PartitionSpecs of logical axis names (`Shardings.logical`)."""
    old_state, fresh_state = jax.device_get(old_state), jax.device_get(fresh_state)
    if jax.tree_util.tree_structure(old_state) != jax.tree_util.tree_structure(fresh_state):
        raise UpdateError(f"model {model_name}: its state on the new sizes has another structure than the run's; "
                          f"it cannot be updated")
    maps = row_maps(old, new)
    names = {}
    param_paths = jax.tree_util.tree_flatten_with_path(old_state.params)[0]
    specs = jax.tree_util.tree_leaves(logical, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    for (path, leaf), spec in zip(param_paths, specs):
        names[dict_keys(path)] = (np.shape(leaf), tuple(spec) if spec is not None else ())

    def grow(path, old_leaf, fresh_leaf):
        keys = dict_keys(path)
        axes = ()
        for start in range(len(keys)):  # the parameter this leaf mirrors (same trailing keys and shape)
            found = names.get(keys[start:])
            if found is not None and found[0] == np.shape(old_leaf):
                axes = found[1]
                break
        where = f"model {model_name}: {'/'.join(keys) or jax.tree_util.keystr(path)}"
        return grow_leaf(old_leaf, fresh_leaf, maps, axes, where)

    params = jax.tree_util.tree_map_with_path(grow, old_state.params, fresh_state.params)
    opt_state = jax.tree_util.tree_map_with_path(grow, old_state.opt_state, fresh_state.opt_state)
    return TrainState(np.asarray(old_state.step), params, opt_state)


# ----------------------------------------------------------------------------- the update


def check_updatable(spec, config) -> None:
    if spec.batch_kind not in UPDATABLE_KINDS:
        raise UpdateError(f"model '{spec.name}' reads '{spec.batch_kind}' batches; stjax update grows models that "
                          f"read {', '.join(UPDATABLE_KINDS)} batches")
    if config.data.split not in (*RECOMPUTED_SPLITS, "held_out_users"):
        raise UpdateError(f"data.split '{config.data.split}': stjax update splits the union by leave_one_out, "
                          f"temporal or held_out_users")
    if jax.process_count() > 1:
        raise UpdateError("stjax update runs in one process (the state is grown on the host)")


def _update_config(config, learning_rate: float, steps: int):
    """The config the update trains with: the run's, at `learning_rate` (0: the run's), the warm-up at
    most a tenth of the update's steps (kept > 0 where the run had one: the optimizer keeps its shape)."""
    updated = ml_collections.ConfigDict(config.to_dict())
    if learning_rate:
        updated.train.learning_rate = float(learning_rate)
    warmup = int(updated.train.warmup_steps)
    if warmup:
        updated.train.warmup_steps = max(1, min(warmup, steps // 10))
    return updated


def _saved_part(folder: RunFolder) -> np.ndarray | None:
    path = folder.path / "updates" / "split.npz"
    if not path.exists():
        return None
    with np.load(path) as saved:
        return np.asarray(saved["part"], np.int8)


def _check_sizes(info: DataInfo, mesh, workdir) -> None:
    if info.item_shards % mesh.shape["model"]:
        raise ConfigError(f"{workdir}: the item table was padded for {info.item_shards} shards, which "
                          f"{mesh.shape['model']} model-parallel devices do not divide")


def update_run(workdir: str | Path, events, *, format: str | None = None, columns=None,
               num_epochs: int | None = None, num_steps: int | None = None, eval_events=None, learning_rate: float = 0.0, keep_previous: bool = False,
               log=print, progress: bool = False) -> dict:
    """Continues the run in `workdir` on `events` (an `InteractionLog` or a file: `format`, `columns`).

    num_steps (0: grow the tables and recompute the context, no training), else num_epochs epochs of the
    update's training rows (None: the run's train.num_epochs);
    eval_events: the following period (log or file, same format), reported before and after;
    learning_rate: the update's peak (0: the run's); keep_previous: keep the run's replaced files and
    checkpoints under updates/<n>/previous/. Returns the update's record (also appended to
    updates.jsonl): sizes, counts, steps, best step, valid/test metrics and the following period's."""
    folder = RunFolder(workdir)
    if not folder.is_run():
        raise UpdateError(f"{workdir}: not a run folder (no config.json/run.json); train first with stjax train")
    with folder.lock():
        return _update(folder, events, format, columns, num_epochs, num_steps, eval_events,
                       float(learning_rate), bool(keep_previous), log, progress)


@dataclasses.dataclass
class _Union:
    """The data of an update: the union prepared as a run's data, the events new to training, sizes."""

    prepared: Prepared
    fresh: np.ndarray  # bool[E] on the union
    info: DataInfo
    counts: dict
    events: int  # the run's events before the update


def _check_checkpoint(folder: RunFolder, log) -> None:
    checkpoints = folder.checkpoints(async_save=False, log=log)
    try:
        if checkpoints.latest_step() is None:
            raise UpdateError(f"{folder}: no checkpoint yet; train first (stjax train)")
    finally:
        checkpoints.close()


def _union_data(folder: RunFolder, config, spec, old_info: DataInfo, new: InteractionLog, source_name: str,
                log) -> _Union:
    """The run's log and `new` as one split log ready to train on, and what is new in it."""
    old_log = folder.log()
    report = RepairReport()
    read = len(new)
    new = clean_new_events(new, config.data, report)
    origin = int(folder.vocab().get("time_origin", int(old_log.timestamp.min()) if len(old_log) else 0))
    early = int((new.timestamp < origin).sum())
    if early:
        raise UpdateError(f"{source_name}: {early:,} new events are older than the run's first event "
                          f"({datetime.datetime.fromtimestamp(origin, datetime.UTC):%Y-%m-%d %H:%M:%S} UTC); "
                          f"an update adds later events")
    old_part = _saved_part(folder)
    if old_part is None or len(old_part) != len(old_log):
        old_part = split_of(old_log, config).part
    union, is_new, order = union_log(old_log, new)
    union_old_part = np.concatenate([old_part, np.full(len(new), TRAIN, np.int8)])[order]
    if bool(config.data.dedup):
        kept = _dedup_rows(union)
        report.drop("duplicate_event", len(union) - len(kept))
        union, is_new, union_old_part = union.select(kept), is_new[kept], union_old_part[kept]
    if not is_new.any():
        raise UpdateError(f"{source_name}: no new events are left ({read:,} read"
                          + "".join(f", {n:,} {kind}" for kind, n in report.dropped.items()) + ")")
    try:
        split = union_split(union, union_old_part, is_new, config.data.split, config)
        prepared = prepare_split(split, config, spec.batch_kind, log)
    except ValueError as err:
        raise UpdateError(f"the union of the run and {source_name}: {err}") from None
    fresh = (split.part == TRAIN) & ~((union_old_part == TRAIN) & ~is_new)
    sequences = prepared.sequences
    info = dataclasses.replace(old_info, num_users=sequences.num_users, num_items=sequences.num_items,
                               max_bag=int(prepared.bags["bag"].shape[1]) if prepared.bags is not None
                               else old_info.max_bag)
    counts = {"read": read, "new_events": int(is_new.sum()), "dropped": dict(report.dropped),
              "new_users": info.num_users - old_info.num_users, "new_items": info.num_items - old_info.num_items,
              "fresh_train_events": int(fresh.sum())}
    return _Union(prepared, fresh, info, counts, len(old_log))


def _grown_model(folder: RunFolder, config, update_config, spec, old_info: DataInfo, data: _Union, steps: int,
                 log) -> tuple[Model, object, int, int]:
    """The model on the new sizes with the run's best state grown into it (on the devices), and
    (model, state, the run's last checkpoint step, the best step it starts from)."""
    old_model = build_model(config, old_info, folder.context() or {})
    _check_sizes(old_info, old_model.mesh, folder)
    checkpoints = folder.checkpoints(async_save=False, log=log)
    try:
        last_step = int(checkpoints.latest_step())
        old_state, _, best_step = checkpoints.restore_intact(old_model.abstract_state(), prefer_best=True)
    finally:
        checkpoints.close()
    try:
        context = spec.make_context(data.prepared, data.info, config)  # graphs, closed forms: on the union
    except ValueError as err:
        raise UpdateError(f"model config: {err}") from None
    model = build_model(update_config, data.info, context, total_steps=max(steps, 1), mesh=old_model.mesh)
    grown = grow_state(old_state, model.state, old_info, data.info, model.shardings.logical, spec.name)
    grown = TrainState(np.asarray(last_step, np.int32), grown.params, restart_schedules(grown.opt_state))
    return model, jax.device_put(grown, model.shardings.state), last_step, int(best_step)


def _update(folder, events, format, columns, num_epochs, num_steps, eval_events, learning_rate, keep_previous,
            log, progress) -> dict:
    wall = time.perf_counter()
    # Everything that can be refused is checked before any model is built.
    config = folder.config()
    try:
        spec = models.get(config.model.name)
    except KeyError as err:
        raise UpdateError(str(err.args[0])) from None
    check_updatable(spec, config)
    _check_checkpoint(folder, log)
    old_info = folder.info()
    number = len(folder.updates()) + 1
    new, source_name = load_events(events, format, columns)
    next_log, eval_name = load_events(eval_events, format, columns) if eval_events is not None else (None, None)
    data = _union_data(folder, config, spec, old_info, new, source_name, log)
    counts = data.counts
    log(f"update {number}: {counts['new_events']:,} new events from {source_name}, {counts['new_users']:,} new users, "
        f"{counts['new_items']:,} new items; {counts['fresh_train_events']:,} events new to training")

    train_rows = fresh_source(spec.batch_kind, data.prepared, data.fresh, config.data)
    iterator = BatchIterator(train_rows, int(config.train.batch_size), seed=int(config.seed))
    steps = 0
    if spec.trainable and train_rows.num_rows:
        epochs = int(config.train.num_epochs) if num_epochs is None else int(num_epochs)
        steps = int(num_steps) if num_steps is not None else epochs * iterator.steps_per_epoch
    elif not train_rows.num_rows:
        log(f"update {number}: no training rows (no new event has an earlier event of its user); the tables "
            f"grow and the context is recomputed, nothing is trained")
    update_config = _update_config(config, learning_rate, steps)
    model, state, last_step, best_step = _grown_model(folder, config, update_config, spec, old_info, data, steps, log)
    run = Run(**{f.name: getattr(model, f.name) for f in dataclasses.fields(Model)}, prepared=data.prepared,
              iterator=iterator, total_steps=last_step + steps)
    evaluators = make_evaluators(run)
    following = following_counts = None
    if next_log is not None:
        following_prepared, following_counts = following_period(data.prepared, next_log, config, spec.batch_kind)
        following = make_evaluators(dataclasses.replace(run, prepared=following_prepared))

    # Train in a staging folder; the run's files are replaced only once it has finished.
    staging = folder.path / ".update"
    if staging.exists():
        shutil.rmtree(staging)  # a killed update's leftovers
    staging.mkdir()
    metric = config.eval.metric
    higher = evaluators.higher_is_better(metric)
    checkpoints = RunFolder(staging).checkpoints(keep=int(config.train.keep_checkpoints), async_save=False, log=log,
                                                 higher_is_better=higher)
    best = Best({"best": None, "bad_evals": 0, "iterator": iterator.get_state(), "stopped_early": False}, higher,
                int(config.train.patience))
    tick = time.perf_counter()
    valid_before = evaluators.evaluate(state.params, "valid", run.context)
    following_before = following.evaluate(state.params, "valid", run.context) if following else None
    before_s = time.perf_counter() - tick
    if metric not in valid_before:
        raise UpdateError(f"the union's validation part has no rows for eval.metric '{metric}'")
    best.update(last_step, valid_before[metric], valid_before)
    checkpoints.save(last_step, state, best.record, valid_before[metric])  # the run's model is a candidate
    folder.truncate_metrics(last_step, log)  # lines of an update that did not finish
    fitted = fit(run, folder, evaluators, checkpoints, best, state, last_step, log=log, progress=progress,
                 origin=last_step)
    best_state, best_record = checkpoints.restore_best(run.abstract_state())
    checkpoints.close()
    tick = time.perf_counter()
    results = {"valid": evaluators.evaluate(best_state.params, "valid", run.context),
               "test": evaluators.evaluate(best_state.params, "test", run.context),
               "protocols": evaluators.protocols}
    rows = evaluators.per_row(best_state.params, "test", run.context)
    if following:
        results["following"] = following.evaluate(best_state.params, "valid", run.context)
    eval_s = time.perf_counter() - tick + before_s + fitted.clock["eval"]
    results |= {"best_step": best_record["best"]["step"], "steps": fitted.step, "stopped_early": best.stopped,
                "config": json.loads(to_json(config)), "update": number,
                "timings": {"train_s": round(fitted.clock["train"], 3), "eval_s": round(eval_s, 3),
                            "compile_s": round(fitted.clock["compile"] or 0.0, 3)}}

    # Commit: the run's files replaced by the union's, a line in updates.jsonl.
    written = RunFolder(staging / "run")
    written.path.mkdir()
    written.write(config, spec, data.info, data.prepared.log, data.prepared.sequences.time_origin, model.context)
    written.write_results(results)
    written.write_rows(rows)
    record = {
        "update": number, "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": source_name, "eval_source": eval_name, **counts,
        "users": [old_info.num_users, data.info.num_users], "items": [old_info.num_items, data.info.num_items],
        "events": [data.events, len(data.prepared.log)], "train_rows": int(train_rows.num_rows),
        "from_step": last_step, "from_best_step": best_step, "steps": steps, "best_step": results["best_step"],
        "trained_to": int(fitted.step), "stopped_early": bool(results["stopped_early"]),
        "options": {"num_epochs": num_epochs, "num_steps": num_steps,
                    "learning_rate": float(update_config.train.learning_rate),
                    "warmup_steps": int(update_config.train.warmup_steps), "keep_previous": keep_previous},
        "valid_before": valid_before, "valid": results["valid"], "test": results["test"],
        "following_before": following_before, "following": results.get("following"),
        "following_counts": following_counts, "timings": results["timings"],
    }
    _replace_run_files(folder, staging, written, folder.path / "updates" / str(number) if keep_previous else None)
    np.savez(folder.path / "updates" / "split.npz", part=data.prepared.split.part)
    record["wall_s"] = round(time.perf_counter() - wall, 3)
    with open(folder.path / "updates.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")
    shutil.rmtree(staging)
    log(f"update {number}: steps {last_step}..{fitted.step}, best step {results['best_step']}; "
        f"valid {metric} {valid_before[metric]:.4f} -> {results['valid'][metric]:.4f}")
    return record


def _dedup_rows(union: InteractionLog) -> np.ndarray:
    """Rows kept by the run's dedup, as `stjax.data.preprocess.deduplicate` keeps them (the first of
    events equal on user, item, time and behaviour: in the sorted union, the old one)."""
    stacked = np.stack([getattr(union, k).astype(np.int64) for k in ("user", "item", "timestamp", "behaviour")], 1)
    _, first = np.unique(stacked, axis=0, return_index=True)
    return np.sort(first)


RUN_FILES = ("config.json", "run.json", "vocab.json", "histories.npz", "context.npz", "results.json", "test_rows.npz")


def _replace_run_files(folder: RunFolder, staging: Path, written: RunFolder, archive: Path | None) -> None:
    """The run's checkpoints and files out (into `archive`, or deleted), the update's in."""
    (folder.path / "updates").mkdir(exist_ok=True)
    if archive is not None:
        (archive / "previous").mkdir(parents=True, exist_ok=True)
    for name in ("checkpoints", *RUN_FILES):
        path = folder.path / name
        if not path.exists():
            continue
        if archive is not None:
            shutil.move(str(path), str(archive / "previous" / name))
        elif path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    shutil.move(str(staging / "checkpoints"), str(folder.path / "checkpoints"))
    for name in RUN_FILES:
        if (written.path / name).exists():
            shutil.move(str(written.path / name), str(folder.path / name))


def updated_run(workdir: str | Path, config=None, context=None, log=print) -> Run:
    """The `Run` of an updated run folder with its data from the folder itself (the union log and the
    split the last update saved), as `stjax evaluate` needs it: the config's source is not the union."""
    folder = RunFolder(workdir)
    config = folder.config() if config is None else config
    spec = models.get(config.model.name)
    part = _saved_part(folder)
    union = folder.log()
    if part is None or len(part) != len(union):
        raise RunError(f"{folder}: updates/split.npz is missing or does not match histories.npz; run stjax update "
                       f"again or use the run's checkpoints as they are (stjax recommend)")
    prepared = prepare_split(Split(union, part, config.data.split), config, spec.batch_kind, log)
    info = folder.info()
    if (info.num_users, info.num_items) != (prepared.sequences.num_users, prepared.sequences.num_items):
        raise RunError(f"{folder}: run.json's sizes ({info.num_users} users, {info.num_items} items) are not those "
                       f"of histories.npz; the folder is damaged")
    context = folder.context() if context is None else context
    model = build_model(config, info, context or {})
    iterator = BatchIterator(prepared.train_source, int(config.train.batch_size), seed=int(config.seed))
    return Run(**{f.name: getattr(model, f.name) for f in dataclasses.fields(Model)}, prepared=prepared,
               iterator=iterator, total_steps=0)


def evaluate_following(workdir: str | Path, events, *, format: str | None = None, columns=None) -> dict:
    """The best checkpoint of any run folder (updated or not) ranked on `events`, the period after its
    log, exactly as an update reports `following`: each known user's whole history as input, their
    distinct items there as targets. Returns the metrics and `counts` (users; events of unknown
    users or items, which cannot be ranked)."""
    folder = RunFolder(workdir)
    config = folder.config()
    spec = models.get(config.model.name)
    union = folder.log()
    part = _saved_part(folder)
    if part is None or len(part) != len(union):
        part = split_of(union, config).part
    prepared = prepare_split(Split(union, part, config.data.split), config, spec.batch_kind, log=lambda m: None)
    next_log, _ = load_events(events, format, columns)
    following, counts = following_period(prepared, next_log, config, spec.batch_kind)
    model = build_model(config, folder.info(), folder.context() or {})
    state, _, _ = folder.restore(model.abstract_state(), prefer_best=True, log=lambda m: None)
    run = Run(**{f.name: getattr(model, f.name) for f in dataclasses.fields(Model)}, prepared=following,
              iterator=None, total_steps=0)
    return make_evaluators(run).evaluate(state.params, "valid", run.context) | {"counts": counts}


__all__ = ["UpdateError", "evaluate_following", "fresh_windows", "grow_state", "grow_vocab", "row_maps", "union_log", "update_run",
           "updated_run"]
