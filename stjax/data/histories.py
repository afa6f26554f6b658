"""History files of original ids, and users' histories as flat arrays (`Histories`).

A history file is CSV `user,item,timestamp` with a header, or JSONL `{"user", "items",
"timestamps"}` (one user per line; a user's lines are merged); timestamps are integer seconds or
ISO-8601 date-times. Every problem is a located `DataError` (file, line, field). `Histories` is the
layout of a run's histories.npz: what `stjax recommend`, `explain` and `export` serve.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from pathlib import Path

import numpy as np

from stjax.data.errors import DataError, Issue
from stjax.data.validate import MAX_TIMESTAMP

INT32_MAX = 2**31 - 1


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


def _lines(path: str):
    """(line number, text) of a file, read as a stream; a located error at the first byte that is
    not UTF-8 (a leading byte-order mark is dropped)."""
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataError([Issue(path, number, None, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                                                           f"{offset + err.start}); save the file as UTF-8")]) from None
            offset += len(raw)
            yield number, text


def _jsonl_rows(path: str):
    """(line, user, items, unix seconds) per non-empty JSONL line, streamed."""
    for number, line in _lines(path):
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
        yield number, user, items, times


def _jsonl_users(path: str):
    """(user, items, seconds) per user, adjacent lines of one user merged, events sorted by time
    (stable). A user whose lines are not adjacent is a located error (streaming cannot merge them)."""
    current, items, times, seen = None, [], [], {}
    for number, user, row_items, row_times in _jsonl_rows(path):
        if user != current:
            if current is not None:
                yield current, *_by_time(items, times)
            key = hash(user)
            if key in seen and _line_has_user(path, seen[key], user):
                raise DataError([Issue(path, number, "user", f"user {user!r} appears again (first on line "
                                                             f"{seen[key]}); put each user's lines together")])
            seen.setdefault(key, number)
            current, items, times = user, [], []
        items.extend(row_items)
        times.extend(row_times)
    if current is not None:
        yield current, *_by_time(items, times)


def _line_has_user(path: str, line: int, user: str) -> bool:
    """Whether line `line` of a JSONL file is a line of `user` (a hash collision check)."""
    for number, row_user, _, _ in _jsonl_rows(path):
        if number == line:
            return row_user == user
    return False


def _by_time(items: list, times: list) -> tuple[list, list]:
    order = sorted(range(len(times)), key=times.__getitem__)  # stable
    return [items[i] for i in order], [times[i] for i in order]


def _csv_columns(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A CSV history file through pyarrow's columnar reader: (users in order of first appearance,
    user index of each row, item ids, unix seconds), checked with located errors (line = row + 2)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    for _ in _lines(path):  # located UTF-8 errors before any parsing
        pass
    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8-sig").strip()
    fields = [name.strip() for name in header.split(",")] if header else []
    for required in ("user", "item"):
        if required not in fields:
            raise DataError([Issue(path, 1, required, "missing required column")])
    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in fields}, strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        import csv

        line = None
        for number, text in _lines(path):  # the first row whose field count is not the header's
            row = next(csv.reader([text]), [])
            if row and len(row) != len(fields):
                line = number
                break
        raise DataError([Issue(path, line, None, f"unreadable CSV ({str(err).splitlines()[0]})")]) from None
    columns = {}
    for name in ("user", "item"):
        column = table.column(name).combine_chunks()
        empty = np.flatnonzero(np.asarray(pc.equal(pc.utf8_length(column), 0)))
        if len(empty):
            raise DataError([Issue(path, int(empty[0]) + 2, name, "expected a value, found none")])
        columns[name] = column
    encoded = columns["user"].dictionary_encode()  # dictionary in order of first appearance
    users = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    codes = np.asarray(encoded.indices, np.int64)
    seconds = np.zeros(len(table), np.int64)
    if "timestamp" in fields:
        stamps = table.column("timestamp").combine_chunks().dictionary_encode()
        values = np.zeros(len(stamps.dictionary), np.int64)
        for index, stamp in enumerate(stamps.dictionary.to_pylist()):
            try:
                values[index] = parse_seconds(stamp or 0)
            except (ValueError, OverflowError):
                row = int(np.flatnonzero(np.asarray(stamps.indices) == index)[0])
                raise DataError([Issue(path, row + 2, "timestamp",
                                       f"expected integer seconds, found {stamp!r} (or an ISO-8601 "
                                       f"date-time such as 2024-05-01T12:00:00)")]) from None
        seconds = values[np.asarray(stamps.indices, np.int64)]
    items = np.asarray(columns["item"].to_numpy(zero_copy_only=False), dtype=object)
    return users, codes, items, seconds


def _csv_users(path: str):
    """(user, items, seconds) per user of a CSV file, in order of first appearance, by time (stable)."""
    users, codes, items, seconds = _csv_columns(path)
    order = np.lexsort((seconds, codes))  # by user, then time; stable
    bounds = np.searchsorted(codes[order], np.arange(len(users) + 1))
    for index, user in enumerate(users):
        rows = order[bounds[index]:bounds[index + 1]]
        yield str(user), items[rows].tolist(), seconds[rows].tolist()


def history_users(path: str):
    """(user, items, unix seconds) per user of a CSV or JSONL history file, streamed (JSONL) or
    columnar (CSV). Every problem is a located `DataError`."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    return _jsonl_users(path) if Path(path).suffix in (".jsonl", ".json") else _csv_users(path)


def read_histories(path: str) -> dict[str, list[tuple[str, int]]]:
    """user -> [(item, unix seconds)] sorted by time (stable), from a CSV or JSONL file, in memory
    (a few users; `HistoryFile` streams a file of any size). Every problem is a located `DataError`."""
    return {user: list(zip(items, times)) for user, items, times in history_users(path)}


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


class HistoryFile:
    """A history file served in chunks of `users_per_chunk` users (`chunks()`, each a `Histories`),
    so that memory does not grow with the number of users of a JSONL file (a CSV file is held as
    columns: about 30 bytes per event instead of a Python tuple each).

    A first pass checks the whole file (every located error comes before any output) and counts
    users, unknown users, skipped items and the longest known history, so that every chunk has the
    same exclusion width (one compile of the serving step)."""

    def __init__(self, path: str, vocab: dict, users_per_chunk: int = 16_384):
        self.path, self.vocab, self.users_per_chunk = path, vocab, max(1, int(users_per_chunk))
        self.item_index = {str(token): i for i, token in enumerate(vocab["items"]) if i > 0}
        self.user_index = {str(token): i for i, token in enumerate(vocab["users"]) if i > 0}
        self.users = self.unknown_items = self.unknown_users = self.longest = 0
        self.first_unknown_user = None
        for user, items, _ in history_users(path):
            known = sum(item in self.item_index for item in items)
            self.users += 1
            self.unknown_items += len(items) - known
            self.longest = max(self.longest, known)
            if user not in self.user_index:
                self.unknown_users += 1
                self.first_unknown_user = self.first_unknown_user or user

    def __len__(self) -> int:
        return self.users

    def chunks(self):
        batch: dict[str, list[tuple[str, int]]] = {}
        for user, items, times in history_users(self.path):
            batch[user] = list(zip(items, times))
            if len(batch) == self.users_per_chunk:
                yield histories_from_dict(batch, self.vocab)
                batch = {}
        if batch:
            yield histories_from_dict(batch, self.vocab)
