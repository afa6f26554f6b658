"""Delimited text reading that knows the line of every row.

Arrow's CSV reader is fast but cannot say which line a bad row came from, so the byte
buffer is first split into lines with NumPy (field counts, empty lines and undecodable
bytes are found there, with their line numbers) and only the good lines go to Arrow.
Row `i` of the result came from line `lines[i]` (1-based, header counted).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from stjax.data.errors import DataError, Issue

_LOW_MEMORY = {"enabled": False}


def set_low_memory(enabled: bool) -> None:
    """Process-wide memory mode of the data layer; nothing changes it at import.

    On: Arrow uses the system allocator (mimalloc, its default pool, keeps freed pages; on
    25M-row tables that doubles the resident memory) and `release_memory` hands freed heap
    pages back to the OS between stages. `prepare` sets it from `data.low_memory`.
    """
    _LOW_MEMORY["enabled"] = bool(enabled)
    pa.set_memory_pool(pa.system_memory_pool() if enabled else pa.default_memory_pool())


def release_memory() -> None:
    """Returns freed heap pages to the OS (glibc keeps them otherwise) in low-memory mode; a no-op
    otherwise and on other C libraries."""
    if not _LOW_MEMORY["enabled"]:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclasses.dataclass
class RawTable:
    """String columns of the good rows of one file, with their line numbers.

    columns: name -> pyarrow StringArray [rows]
    lines: int64[rows], 1-based line of each row in the file
    line_issues: problems found per line (those lines are not in `columns`)
    rows_read: data lines read, good and bad (header excluded)
    """

    file: str
    columns: dict[str, pa.Array]
    lines: np.ndarray
    line_issues: list[Issue]
    rows_read: int

    @property
    def num_rows(self) -> int:
        return len(self.lines)


def _line_bounds(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    newlines = np.flatnonzero(arr == 10)
    ends = newlines
    if len(arr) and arr[-1] != 10:
        ends = np.append(newlines, len(arr))
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, np.int64)
    return starts.astype(np.int64), ends.astype(np.int64)


def _undecodable_lines(buf: bytes, encoding: str, limit: int) -> list[tuple[int, int]]:
    """(line, byte offset in line) of undecodable bytes, up to `limit` lines."""
    found = []
    position = 0
    while len(found) < limit:
        try:
            buf[position:].decode(encoding)
            break
        except UnicodeDecodeError as err:
            bad = position + err.start
            line = buf.count(b"\n", 0, bad) + 1
            line_start = buf.rfind(b"\n", 0, bad) + 1
            found.append((line, bad - line_start))
            next_newline = buf.find(b"\n", bad)
            if next_newline < 0:
                break
            position = next_newline + 1
    return found


def read_delimited(
    path: str | Path,
    *,
    delimiter: str,
    names: list[str] | None = None,
    header: bool = False,
    encoding: str = "utf-8",
    quote_char: str | None = None,
    max_issues: int = 1000,
    whitespace: bool = False,
) -> RawTable:
    """Reads a delimited file into string columns, locating every malformed line.

    Bad lines never stop the reader: they become `line_issues`, and the caller's
    `RowChecker` decides (strict: raise; repair: drop and count).

    Args:
      path: the file.
      delimiter: field separator; several characters are allowed (`::` for MovieLens 1M).
      names: column names; when `header` is true they come from the first line instead
        (and `names`, when given, overrides them).
      header: whether the first line holds the column names.
      encoding: text encoding of the file; undecodable bytes are issues.
      quote_char: when set and present in the file, the slower `csv` module parses it.
      max_issues: how many issues to keep in full (all are counted in `rows_read`).
      whitespace: fields are separated by runs of spaces and tabs (leading and trailing ones
        ignored), as in edge lists written by hand; `delimiter` must then be " ".
    """
    if whitespace and delimiter != " ":
        raise ValueError(f"whitespace=True splits on runs of spaces and tabs; delimiter must be ' ', got {delimiter!r}")
    path = Path(path)
    name = str(path)
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, expected a file") from None
    if not buf.strip():
        raise DataError([Issue(name, None, None, "file is empty", "empty_file")])
    if b"\r" in buf:
        buf = buf.replace(b"\r\n", b"\n")
    if buf.startswith(b"\xef\xbb\xbf"):
        buf = buf[3:]
    if whitespace:  # one space between fields, none around them; lines keep their numbers
        buf = re.sub(rb"[ \t]+", b" ", buf)
        buf = re.sub(rb"(?m)^ | $", b"", buf)
    # Blank lines at the very end hold no record; blank lines inside the file are issues.
    buf = buf.rstrip(b"\n") + b"\n"

    arr = np.frombuffer(buf, dtype=np.uint8)
    starts, ends = _line_bounds(arr)
    num_lines = len(starts)
    issues: list[Issue] = []
    bad_line = np.zeros(num_lines, dtype=bool)

    first_data = 0
    if header:
        first_data = 1
        header_text = buf[starts[0] : ends[0]].decode(encoding, errors="replace")
        header_names = [h.strip() for h in _split_header(header_text, delimiter, quote_char)]
        if names is None:
            names = header_names
        seen = set()
        for column in header_names:
            if column in seen:
                raise DataError([Issue(name, 1, column, "duplicated column name", "header")])
            seen.add(column)
    if names is None:
        raise ValueError("names are required when the file has no header")
    if num_lines <= first_data:
        raise DataError([Issue(name, None, None, "header only, no data rows", "empty_file")])

    for line, offset in _undecodable_lines(buf, encoding, max_issues):
        if line - 1 >= first_data:
            bad_line[line - 1] = True
            issues.append(
                Issue(name, line, None, f"undecodable bytes for encoding {encoding} at column {offset + 1}", "undecodable_bytes")
            )
        else:
            raise DataError([Issue(name, line, None, f"undecodable bytes for encoding {encoding}", "header")])

    use_csv_module = quote_char is not None and quote_char.encode() in buf
    if use_csv_module:
        return _read_quoted(name, buf, delimiter, names, first_data, encoding, quote_char, issues, bad_line)

    delim = delimiter.encode()
    if len(delim) > 1:
        # One-byte unit separator stands in for a multi-character delimiter.
        if b"\x1f" in buf:
            raise DataError(f"{name}: contains byte 0x1f, cannot split on {delimiter!r}")
        buf = buf.replace(delim, b"\x1f")
        delim = b"\x1f"
        arr = np.frombuffer(buf, dtype=np.uint8)
        starts, ends = _line_bounds(arr)
    # A carriage return left after CRLF normalisation would end a line for Arrow.
    stray = np.flatnonzero(arr == 13)
    if len(stray):
        for index in np.unique(np.searchsorted(ends, stray, side="left")):
            if index >= first_data and not bad_line[index]:
                bad_line[index] = True
                issues.append(Issue(name, int(index) + 1, None, "stray carriage return inside the line", "stray_carriage_return"))
    delim_positions = np.flatnonzero(arr == delim[0])
    line_of_delim = np.searchsorted(ends, delim_positions, side="left")
    field_counts = np.bincount(line_of_delim, minlength=num_lines)[:num_lines] + 1
    lengths = ends - starts
    expected = len(names)
    data = slice(first_data, None)
    empty = np.zeros(num_lines, dtype=bool)
    empty[data] = lengths[data] == 0
    # A last empty line is only the file's final newline.
    wrong = np.zeros(num_lines, dtype=bool)
    wrong[data] = (field_counts[data] != expected) & ~empty[data]
    empty &= ~bad_line
    wrong &= ~bad_line
    for index in np.flatnonzero(empty)[:max_issues]:
        issues.append(Issue(name, int(index) + 1, None, "empty line", "empty_line"))
    for index in np.flatnonzero(wrong)[:max_issues]:
        issues.append(
            Issue(name, int(index) + 1, None, f"expected {expected} fields, found {field_counts[index]}", "wrong_column_count")
        )
    bad_line |= empty | wrong
    bad_line[:first_data] = True
    good = np.flatnonzero(~bad_line)
    rows_read = num_lines - first_data

    if len(good) == 0:
        columns = {n: pa.array([], pa.string()) for n in names}
        return RawTable(name, columns, good.astype(np.int64) + 1, sorted(issues, key=_line_key), rows_read)
    if bad_line[first_data:].any() or first_data:
        keep_bytes = np.zeros(len(arr) + 1, dtype=np.int8)
        np.add.at(keep_bytes, starts[good], 1)
        np.add.at(keep_bytes, np.minimum(ends[good] + 1, len(arr)), -1)
        mask = np.cumsum(keep_bytes[:-1]).astype(bool)
        body = arr[mask].tobytes()
        if not body.endswith(b"\n"):
            body += b"\n"
    else:
        body = buf
    table = pacsv.read_csv(
        io.BytesIO(body),
        read_options=pacsv.ReadOptions(column_names=names, encoding=encoding, block_size=1 << 24),
        parse_options=pacsv.ParseOptions(delimiter=delim.decode("latin-1"), quote_char=False, escape_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    columns = {n: pc.utf8_trim_whitespace(table.column(n).combine_chunks()) for n in names}
    return RawTable(name, columns, good.astype(np.int64) + 1, sorted(issues, key=_line_key), rows_read)


def _line_key(issue: Issue) -> int:
    return issue.line or 0


def _split_header(text: str, delimiter: str, quote_char: str | None) -> list[str]:
    if quote_char:
        return next(csv.reader([text], delimiter=delimiter, quotechar=quote_char))
    return text.split(delimiter)


def _read_quoted(name, buf, delimiter, names, first_data, encoding, quote_char, issues, bad_line) -> RawTable:
    text = buf.decode(encoding, errors="replace")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar=quote_char, strict=True)
    rows: list[list[str]] = []
    lines: list[int] = []
    rows_read = 0
    bad_lines = set(np.flatnonzero(bad_line) + 1)
    try:
        for index, row in enumerate(reader):
            line = reader.line_num
            if index < first_data:
                continue
            rows_read += 1
            if line in bad_lines:
                continue
            if not row:
                issues.append(Issue(name, line, None, "empty line", "empty_line"))
                continue
            if len(row) != len(names):
                issues.append(Issue(name, line, None, f"expected {len(names)} fields, found {len(row)}", "wrong_column_count"))
                continue
            rows.append(row)
            lines.append(line)
    except csv.Error as err:
        raise DataError([Issue(name, reader.line_num, None, f"malformed quoting: {err}", "quoting")]) from None
    columns = {
        n: pa.array([r[i].strip() for r in rows], pa.string()) for i, n in enumerate(names)
    }
    return RawTable(name, columns, np.asarray(lines, dtype=np.int64), sorted(issues, key=_line_key), rows_read)
