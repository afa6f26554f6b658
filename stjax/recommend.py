"""Top-K recommendation, streamed: users in fixed-size batches, one jitted step per batch.

Users come from a history file of original ids (CSV `user,item,timestamp` with a header, or
JSONL `{"user", "items", "timestamps"}`; new users welcome, items the model never saw are
skipped and counted) or from the run's own log (`histories.npz`, every training user). The
step scores all items, masks padding and every item of the user's history (all of it, not only
the last max_length events the model reads) and keeps the top k on the device: only [B, k] ids
and scores come back, and rows are written as they come (JSONL or Parquet), so memory grows
with the batch size, never with the number of users.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from stjax.data.errors import DataError, Issue
from stjax.data.validate import MAX_TIMESTAMP
from stjax.models.shared import mask_non_items
from stjax.progress import rate_bar

INT32_MAX = 2**31 - 1
OUTPUT_SUFFIXES = (".jsonl", ".json", ".parquet")
ROWS_PER_GROUP = 65_536  # Parquet rows per row group: one group is what the writer holds in memory


class RecommendError(ValueError):
    """A request that cannot be served (k out of range, a model kind without a recommend batch, a bad
    output name): a one-line message for the user."""


# ----------------------------------------------------------------------------- reading histories


def _decode(path: str) -> str:
    """The file's text; a located error (line of the first bad byte) when it is not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError([Issue(path, line, None, f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                                                 f"{err.start}); save the file as UTF-8")]) from None


def parse_seconds(value) -> int:
    """Unix seconds from an integer (or a number string) or an ISO-8601 date-time string
    (`2024-05-01T12:00:00`, `2024-05-01 12:00:00+02:00`, `2024-05-01`; no zone = UTC).
    Raises ValueError on anything else."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return _in_range(value)
    text = str(value).strip()
    try:
        return _in_range(float(text))
    except ValueError:
        pass
    when = datetime.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return _in_range(when.timestamp())


def _in_range(seconds) -> int:
    """Whole seconds within +-MAX_TIMESTAMP (the range `stjax data validate` accepts); ValueError else."""
    if not math.isfinite(seconds) or abs(seconds) > MAX_TIMESTAMP:
        raise ValueError(f"timestamp {seconds} out of range")
    return int(seconds)


def _item_list(value) -> list[str]:
    """JSONL `items`: a list of ids, or one id given as a string or a number."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list) and all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in value):
        return [str(i) for i in value]
    raise TypeError(f"items must be a list of ids or one id, found {json.dumps(value)[:60]}")


def read_histories(path: str) -> dict[str, list[tuple[str, int]]]:
    """user -> [(item, unix seconds)] sorted by time (stable), from a CSV or JSONL file.

    Timestamps are integer seconds or ISO-8601 date-times. Every problem is a located `DataError`."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{path}: no such file")
    text = _decode(path)
    histories: dict[str, list[tuple[str, int]]] = {}
    if file.suffix in (".jsonl", ".json"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise TypeError("expected a JSON object")
                items = _item_list(row["items"])
                user = str(row.get("user", f"user-{number}"))
                stamps = row.get("timestamps", list(range(len(items))))
                stamps = [stamps] if isinstance(stamps, (str, int, float)) else stamps
            except (ValueError, KeyError, TypeError) as err:
                message = f"missing key {err}" if isinstance(err, KeyError) else str(err)
                raise DataError([Issue(path, number, None,
                                       f"expected {{user, items, timestamps}} JSON ({message})")]) from None
            if not isinstance(stamps, list) or len(stamps) != len(items):
                raise DataError([Issue(path, number, "timestamps", "expected one timestamp per item")])
            times = []
            for stamp in stamps:
                try:
                    times.append(parse_seconds(stamp))
                except (ValueError, TypeError, OverflowError):
                    raise DataError([Issue(path, number, "timestamps", f"expected integer seconds or ISO-8601 "
                                                                       f"date-times, found {stamp!r}")]) from None
            histories.setdefault(user, []).extend(zip(items, times))
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            fields = reader.fieldnames or []
            for required in ("user", "item"):
                if required not in fields:
                    raise DataError([Issue(path, 1, required, "missing required column")])
            for row in reader:
                user, item = row.get("user"), row.get("item")
                for name, value in (("user", user), ("item", item)):
                    if not value:
                        raise DataError([Issue(path, reader.line_num, name, "expected a value, found none")])
                stamp = row.get("timestamp") or 0
                try:
                    seconds = parse_seconds(stamp)
                except (ValueError, OverflowError):
                    raise DataError([Issue(path, reader.line_num, "timestamp",
                                           f"expected integer seconds, found {stamp!r} (or an ISO-8601 "
                                           f"date-time such as 2024-05-01T12:00:00)")]) from None
                histories.setdefault(user, []).append((item, seconds))
        except csv.Error as err:
            raise DataError([Issue(path, reader.line_num, None, f"unreadable CSV ({err})")]) from None
    for user in histories:
        histories[user].sort(key=lambda pair: pair[1])
    return histories


# ----------------------------------------------------------------------------- histories as arrays


@dataclasses.dataclass(frozen=True)
class Histories:
    """The users to recommend for, as flat arrays (the layout of a run's histories.npz).

    users: original user ids, str[U] (a NumPy array of str); user_ids: int32[U], the model's user
    ids (0 = unknown); offsets: int64[U+1], user u's events are items[offsets[u]:offsets[u+1]], in
    time order;
    items: int32[E] (model item ids, known items only); timestamps: int32[E], seconds since the run's
    time origin, clipped to [0, 2**31-1]; unknown_items: history items the model never saw (skipped).
    """

    users: np.ndarray
    user_ids: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    unknown_items: int = 0

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def longest(self) -> int:
        """The longest history, in events (the width of the exclusion window)."""
        return int(np.diff(self.offsets).max(initial=0))


def histories_from_dict(histories: dict[str, list[tuple[str, int]]], vocab: dict) -> Histories:
    """`read_histories` output -> `Histories` against a run's vocab.json (items, users, time_origin)."""
    item_index = {str(token): i for i, token in enumerate(vocab["items"]) if i > 0}
    user_index = {str(token): i for i, token in enumerate(vocab["users"]) if i > 0}
    origin = int(vocab["time_origin"])
    users, counts, items, times = [], [], [], []
    unknown = 0
    for user, events in histories.items():
        known = [(item_index[item], stamp) for item, stamp in events if item in item_index]
        unknown += len(events) - len(known)
        users.append(user)
        counts.append(len(known))
        items.extend(item for item, _ in known)
        times.extend(stamp for _, stamp in known)
    relative = np.clip(np.asarray(times, np.int64) - origin, 0, INT32_MAX).astype(np.int32)
    return Histories(users=np.asarray(users, dtype=object),
                     user_ids=np.asarray([user_index.get(u, 0) for u in users], np.int32),
                     offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
                     items=np.asarray(items, np.int32), timestamps=relative, unknown_items=unknown)


def histories_from_file(path: str, vocab: dict) -> Histories:
    """A CSV / JSONL history file of original ids (see `read_histories`) against a run's vocab."""
    return histories_from_dict(read_histories(path), vocab)


def histories_from_run(workdir: str | Path, vocab: dict) -> Histories:
    """Every user of the run's training log (histories.npz), with all of their events."""
    path = Path(workdir) / "histories.npz"
    if not path.exists():
        raise RecommendError(f"{workdir}: no histories.npz (written by stjax train); use --history instead")
    with np.load(path) as saved:
        offsets, items, timestamps = saved["offsets"], saved["items"], saved["timestamps"]
    num_users = len(vocab["users"]) - 1  # id 0 is "<pad>"
    return Histories(users=np.asarray([str(user) for user in vocab["users"][1:]], dtype=object),
                     user_ids=np.arange(1, num_users + 1, dtype=np.int32),
                     offsets=np.asarray(offsets[1:num_users + 2], np.int64),
                     items=np.asarray(items, np.int32), timestamps=np.asarray(timestamps, np.int32))


def _last_events(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """values[max(start, end-width):end] per row, right-aligned and left-padded with 0. -> [rows, width]"""
    index = ends[:, None] - width + np.arange(width)[None, :]
    valid = index >= starts[:, None]
    if len(values) == 0:
        return np.zeros(index.shape, values.dtype)
    return np.where(valid, values[np.clip(index, 0, len(values) - 1)], 0).astype(values.dtype)


def _recent_distinct(window: np.ndarray, width: int) -> np.ndarray:
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


def build_batch(histories: Histories, start: int, batch_size: int, batch_kind: str, max_length: int,
                exclude_width: int, bag_width: int = 1) -> dict:
    """The model batch of users start..start+batch_size (the last batch padded with empty users).

    Returns users int32[B], exclude int32[B, S] (every history event, 0 = none) and, for 'sequence',
    items / timestamps int32[B, T] (the last T events, left-padded), for 'bag', bag int32[B, L] (the
    L most recent distinct items); 'pairs' models read the users alone."""
    stop = min(start + batch_size, len(histories))
    pad = batch_size - (stop - start)
    starts = np.pad(histories.offsets[start:stop], (0, pad))
    ends = np.pad(histories.offsets[start + 1:stop + 1], (0, pad))
    span = max(exclude_width, max_length if batch_kind == "sequence" else 0)
    events = _last_events(histories.items, starts, ends, span)  # [B, max(S, T)]
    batch = {"users": np.pad(histories.user_ids[start:stop], (0, pad)),
             "exclude": events[:, span - exclude_width:]}
    if batch_kind == "sequence":
        batch["items"] = events[:, span - max_length:]
        batch["timestamps"] = _last_events(histories.timestamps, starts, ends, max_length)
    elif batch_kind == "bag":
        batch["bag"] = _recent_distinct(batch["exclude"], bag_width)
    return batch


# ----------------------------------------------------------------------------- the device step


class Recommendations(NamedTuple):
    """One batch of results. users: str[b]; items: int32[b, k] (model ids, best first); scores:
    float32[b, k]; counts: int32[b], the leading entries of each row that are real (an entry past it
    had score -inf: fewer than k items were left); known_history: int32[b], distinct known items."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    counts: np.ndarray
    known_history: np.ndarray

    def rows(self, item_tokens) -> Iterator[dict]:
        """Row dicts with original ids: {user, items, scores (rounded to 5 places), known_history}."""
        scores = np.round(self.scores.astype(np.float64), 5).tolist()
        items = self.items.tolist()
        for row, (user, count, known) in enumerate(zip(self.users, self.counts.tolist(),
                                                       self.known_history.tolist())):
            yield {"user": str(user), "items": [str(item_tokens[i]) for i in items[row][:count]],
                   "scores": scores[row][:count], "known_history": known}


def check_k(k: int, num_items: int) -> int:
    """k must be >= 1; above the catalogue it is clamped to num_items (the caller warns)."""
    if k < 1:
        raise RecommendError(f"--k {k} is out of range: expected 1..{num_items} (the model's items)")
    return min(k, num_items)


def make_recommend_step(model, k: int):
    """jit-compiled (params, batch, context, scoring) -> (scores float32[B, k], items int32[B, k],
    known_history int32[B]): score every item, -inf at padding, at the table's padding rows and at
    the history (`batch['exclude']`, int32[B, S]), then the exact top k. One compile per batch shape."""
    spec, module, num_items = model.spec, model.module, model.info.num_items
    k = check_k(k, num_items)

    def recommend_step(params, batch, context, scoring):
        exclude = batch["exclude"]
        inputs = {name: value for name, value in batch.items() if name != "exclude"}
        scores = spec.score(module, {"params": params}, inputs, context=context, scoring=scoring)
        scores = mask_non_items(scores.astype(jnp.float32), num_items)  # [B, W]
        rows = jnp.arange(scores.shape[0])[:, None]
        scores = scores.at[rows, exclude].set(-jnp.inf)  # exclude 0 hits column 0, already -inf
        top_scores, top_items = jax.lax.top_k(scores, k)  # [B, k]
        ordered = jnp.sort(exclude, axis=1)
        distinct = (ordered > 0) & jnp.concatenate(
            [jnp.ones_like(ordered[:, :1], bool), ordered[:, 1:] != ordered[:, :-1]], axis=1)
        return top_scores, top_items.astype(jnp.int32), distinct.sum(axis=1, dtype=jnp.int32)

    return jax.jit(recommend_step)


def check_batch_kind(spec, histories: Histories | None = None) -> None:
    """Recommend builds 'sequence', 'bag' and 'pairs' batches; a 'pairs' model (one embedding per
    trained user, e.g. LightGCN) scores only users it was trained on."""
    if spec.batch_kind not in ("sequence", "bag", "pairs"):
        raise RecommendError(f"model '{spec.name}' reads '{spec.batch_kind}' batches; recommend serves models "
                             f"that read a history as a sequence or a bag of items, or known users")
    if spec.batch_kind == "pairs" and histories is not None and len(histories):
        unknown = np.flatnonzero(histories.user_ids == 0)
        if len(unknown):
            raise RecommendError(f"model '{spec.name}' scores only the users it was trained on; {len(unknown)} of "
                                 f"the given users are unknown to it (e.g. '{histories.users[unknown[0]]}')")


def round_batch_size(batch_size: int, model) -> int:
    """batch_size rounded up to a multiple of the mesh's data-parallel devices."""
    devices = model.shardings.mesh.shape["data"]
    return max(devices, -(-int(batch_size) // devices) * devices)


def recommend_batches(model, histories: Histories, k: int, batch_size: int = 512, step=None
                      ) -> Iterator[Recommendations]:
    """Top-k for every user of `histories`, one `Recommendations` per batch, in order.

    model: a `stjax.train.loop.Model` (see `load_model`). batch_size is rounded up to a multiple of
    the data-parallel devices; every batch has that size (the last is padded), so the step compiles
    once. `prepare_scoring` runs once. Batch i+1 is dispatched before batch i is fetched, so the host
    builds and writes while the device scores. step: a `make_recommend_step(model, k)` to reuse."""
    spec, info = model.spec, model.info
    check_batch_kind(spec, histories)
    step = step or make_recommend_step(model, k)
    batch_size = round_batch_size(batch_size, model)
    params, context = model.state.params, model.context
    scoring = spec.prepare_scoring(model.module, {"params": params}, context=context)
    exclude_width = max(1, histories.longest)
    bag_width = max(1, int(info.max_bag))

    def fetch(start, result) -> Recommendations:
        top_scores, top_items, known = jax.device_get(result)
        stop = min(start + batch_size, len(histories))
        top_scores, top_items = top_scores[:stop - start], top_items[:stop - start]
        counts = np.isfinite(top_scores).sum(axis=1).astype(np.int32)  # -inf entries come last
        return Recommendations(histories.users[start:stop], top_items, top_scores, counts,
                               known[:stop - start])

    pending = None
    for start in range(0, len(histories), batch_size):
        batch = build_batch(histories, start, batch_size, spec.batch_kind, info.max_length, exclude_width,
                            bag_width)
        result = step(params, jax.device_put(batch, model.shardings.batch), context, scoring)
        if pending is not None:
            yield fetch(*pending)
        pending = (start, result)
    if pending is not None:
        yield fetch(*pending)


# ----------------------------------------------------------------------------- writing


class JsonlWriter:
    """One JSON object per line: {"user", "items", "scores", "known_history"}. out: a path or a text stream."""

    def __init__(self, out, item_tokens):
        self.tokens = [str(token) for token in item_tokens]
        self.own = not hasattr(out, "write")
        self.handle = open(out, "w") if self.own else out

    def write(self, batch: Recommendations) -> None:
        self.handle.write("".join(json.dumps(row) + "\n" for row in batch.rows(self.tokens)))

    def close(self) -> None:
        if self.own:
            self.handle.close()
        else:
            self.handle.flush()


class ParquetWriter:
    """Columns user string, items list<string>, scores list<float>, known_history int32; one row group
    per ROWS_PER_GROUP users, built from the batch arrays without a per-user loop."""

    def __init__(self, out, item_tokens, rows_per_group: int = ROWS_PER_GROUP):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.tokens = pa.array([str(token) for token in item_tokens], pa.string())
        self.schema = pa.schema([("user", pa.string()), ("items", pa.list_(pa.string())),
                                 ("scores", pa.list_(pa.float32())), ("known_history", pa.int32())])
        self.writer = pq.ParquetWriter(out, self.schema)
        self.rows_per_group = rows_per_group
        self.chunk: list = []
        self.chunk_rows = 0

    def write(self, batch: Recommendations) -> None:
        pa = self.pa
        real = np.arange(batch.items.shape[1])[None, :] < batch.counts[:, None]  # [b, k]
        offsets = pa.array(np.concatenate([[0], np.cumsum(batch.counts)]).astype(np.int32))
        items = pa.ListArray.from_arrays(offsets, self.tokens.take(pa.array(batch.items[real])))
        scores = pa.ListArray.from_arrays(offsets, pa.array(np.round(batch.scores[real], 5).astype(np.float32)))
        users = pa.array(batch.users, pa.string())
        self.chunk.append(pa.RecordBatch.from_arrays(
            [users, items, scores, pa.array(batch.known_history, pa.int32())], schema=self.schema))
        self.chunk_rows += len(batch.users)
        if self.chunk_rows >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        if self.chunk:
            self.writer.write_table(self.pa.Table.from_batches(self.chunk, self.schema),
                                    row_group_size=max(self.chunk_rows, 1))
        self.chunk, self.chunk_rows = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


def check_output(out: str) -> None:
    if out != "-" and Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise RecommendError(f"--out {out}: expected a .jsonl, .json or .parquet file name, or - for stdout")


def open_writer(out: str, item_tokens, stdout=None):
    """A JsonlWriter or ParquetWriter chosen by the name's suffix; "-" = JSONL on `stdout`."""
    check_output(out)
    if out == "-":
        return JsonlWriter(stdout or sys.stdout, item_tokens)
    suffix = Path(out).suffix.lower()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return ParquetWriter(out, item_tokens) if suffix == ".parquet" else JsonlWriter(out, item_tokens)


def _progress_bar(total: int):
    return rate_bar("recommending", total, "users", rate_format=",.0f", stderr=True, transient=True)


def recommend(model, histories: Histories, item_tokens, k: int, out: str = "-", batch_size: int = 512,
              progress: bool = False, stdout=None) -> dict:
    """Streams the top-k of every user of `histories` to `out` (.jsonl/.json/.parquet, "-" = stdout).

    item_tokens: the original item ids by model id (vocab.json "items"). Returns a summary: users,
    unknown_items (skipped history items), seconds, users_per_s, batch_size."""
    k = check_k(k, model.info.num_items)
    check_batch_kind(model.spec, histories)
    writer = open_writer(out, item_tokens, stdout)
    bar = _progress_bar(len(histories)) if progress else None
    tick = time.perf_counter()
    done = 0
    try:
        if bar:
            bar[0].start()
        for batch in recommend_batches(model, histories, k, batch_size):
            writer.write(batch)
            done += len(batch.users)
            if bar:
                bar[0].update(bar[1], completed=done)
    finally:
        if bar:
            bar[0].stop()
        writer.close()
    seconds = time.perf_counter() - tick
    return {"users": done, "unknown_items": histories.unknown_items, "seconds": round(seconds, 3),
            "users_per_s": round(done / seconds, 1) if seconds > 0 else None,
            "batch_size": round_batch_size(batch_size, model)}


def summary_line(summary: dict) -> str:
    """users, skipped history items, time and rate, on one line."""
    return (f"{summary['users']:,} users; history items unknown to the model and skipped: "
            f"{summary['unknown_items']:,}; {summary['seconds']:.1f} s, {summary['users_per_s'] or 0:,.0f} users/s")


def recommend_rows(model, histories: dict[str, list[tuple[str, int]]], vocab: dict, k: int,
                   batch_size: int = 512) -> tuple[list[dict], dict]:
    """In memory, for a few users: (rows, {"unknown_items"}) from `read_histories`-style histories."""
    arrays = histories_from_dict(histories, vocab)
    rows = [row for batch in recommend_batches(model, arrays, k, batch_size) for row in batch.rows(vocab["items"])]
    return rows, {"unknown_items": arrays.unknown_items}


