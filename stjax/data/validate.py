"""Typed columns from string columns, with every bad value located and counted.

A `RowChecker` follows one file's rows. Each conversion flags the rows whose value is bad;
in strict mode the flags become `Issue`s (file, line, field, what was expected) and
`finish()` raises `DataError`; in repair mode the flagged rows are dropped and counted by
kind in the `RepairReport`, each row once, under the first problem found in it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stjax.data.errors import MAX_LISTED_ERRORS, DataError, Issue, RepairReport
from stjax.data.textio import RawTable

INT_PATTERN = r"^[+-]?[0-9]+$"
FLOAT_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
INT32_MAX = 2**31 - 1
# Timestamps later than this are surely not seconds (milliseconds or garbage).
MAX_TIMESTAMP = 4_102_444_800  # 2100-01-01


class RowChecker:
    """Collects per-row problems of one file. See the module docstring."""

    def __init__(self, raw: RawTable, strict: bool, report: RepairReport | None = None):
        self.file = raw.file
        self.lines = raw.lines
        self.strict = strict
        self.report = report if report is not None else RepairReport()
        self.report.rows_read += raw.rows_read
        self.drop = np.zeros(raw.num_rows, dtype=bool)
        self.issues: list[Issue] = list(raw.line_issues)
        self.num_issues = len(raw.line_issues)
        for issue in raw.line_issues:
            self.report.dropped[issue.kind] += 1
        self.report.examples.extend(raw.line_issues[:MAX_LISTED_ERRORS])

    def flag(self, bad: np.ndarray, field: str, kind: str, describe, values=None) -> None:
        """Marks rows `bad` (bool[rows]); `describe(value)` says what was found there."""
        bad = np.asarray(bad, dtype=bool)
        new = bad & ~self.drop
        indices = np.flatnonzero(new)
        if len(indices) == 0:
            return
        self.drop |= new
        self.num_issues += len(indices)
        self.report.dropped[kind] += len(indices)
        for index in indices[: MAX_LISTED_ERRORS]:
            shown = None if values is None else values[int(index)]
            issue = Issue(self.file, int(self.lines[index]), field, describe(shown), kind)
            self.issues.append(issue)
            if len(self.report.examples) < MAX_LISTED_ERRORS:
                self.report.examples.append(issue)

    def repair(self, count: int, kind: str) -> None:
        self.report.repaired[kind] += int(count)

    def finish(self) -> np.ndarray:
        """Raises in strict mode when anything was flagged; returns the rows to keep."""
        if self.strict and self.num_issues:
            ordered = sorted(self.issues, key=lambda i: (i.line or 0))
            raise DataError(ordered[:MAX_LISTED_ERRORS], total=self.num_issues)
        keep = ~self.drop
        self.report.kept += int(keep.sum())
        return keep


def _show(value) -> str:
    text = "" if value is None else str(value)
    return "empty" if text == "" else repr(text) if len(text) < 40 else repr(text[:37] + "...")


def to_int(checker: RowChecker, column: pa.Array, field: str, *, low=None, high=None, what="integer") -> np.ndarray:
    """int64[rows]; flags non-integers, values outside [low, high] and int64 overflow."""
    matches = pc.match_substring_regex(column, INT_PATTERN).to_numpy(zero_copy_only=False)
    checker.flag(~matches, field, "not_a_number", lambda v: f"expected {what}, found {_show(v)}", column)
    # 18 digits always fit int64; longer ones are checked for overflow after a float parse.
    long_values = pc.greater(pc.utf8_length(pc.utf8_ltrim(column, characters="+-0")), 18).to_numpy(zero_copy_only=False)
    safe = pc.if_else(pa.array(matches & ~long_values), column, pa.scalar("0"))
    values = pc.cast(safe, pa.int64()).to_numpy(zero_copy_only=False)
    if long_values.any():
        big = matches & long_values
        checker.flag(big, field, "overflow", lambda v: f"value {v} overflows a 64-bit integer", column)
    if low is not None:
        checker.flag(values < low, field, "out_of_range", lambda v: f"expected {what} >= {low}, found {v}", column)
    if high is not None:
        checker.flag(values > high, field, "overflow" if high >= INT32_MAX else "out_of_range",
                     lambda v: f"value {v} exceeds {high}", column)
    return values


def to_float(checker: RowChecker, column: pa.Array, field: str, *, low=None, high=None,
             optional: bool = False, repair_range: bool = False) -> np.ndarray:
    """float64[rows]; flags non-numbers, NaN/inf and values outside [low, high].

    optional: empty values become NaN instead of errors.
    repair_range: out-of-range values become NaN and are counted as repaired (repair mode).
    """
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return _numeric_float(checker, column, field, low, high, optional, repair_range)
    empty = pc.equal(column, "").to_numpy(zero_copy_only=False)
    matches = pc.match_substring_regex(column, FLOAT_PATTERN).to_numpy(zero_copy_only=False)
    lowered = pc.utf8_lower(column)
    nonfinite = pc.is_in(lowered, pa.array(["nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "-infinity"]))
    nonfinite = nonfinite.to_numpy(zero_copy_only=False)
    if optional:
        # In an optional column NaN means missing (as Parquet and pandas write it).
        nan_text = pc.is_in(lowered, pa.array(["nan", "+nan", "-nan"])).to_numpy(zero_copy_only=False)
        empty = empty | nan_text
        nonfinite = nonfinite & ~nan_text
    bad_text = ~matches & ~nonfinite & ~(empty & optional)
    checker.flag(bad_text, field, "not_a_number", lambda v: f"expected a number, found {_show(v)}", column)
    checker.flag(nonfinite, field, "not_finite", lambda v: f"expected a finite number, found {_show(v)}", column)
    safe = pc.if_else(pa.array(matches), column, pa.scalar("nan"))
    values = pc.cast(safe, pa.float64()).to_numpy(zero_copy_only=False).copy()
    return _check_range(checker, values, column, field, low, high, repair_range)


def _check_range(checker, values, column, field, low, high, repair_range) -> np.ndarray:
    """Flags (or, in repair mode with repair_range, blanks and counts) values outside [low, high]."""
    out_of_range = np.zeros(len(values), dtype=bool)
    with np.errstate(invalid="ignore"):
        if low is not None:
            out_of_range |= values < low
        if high is not None:
            out_of_range |= values > high
    if out_of_range.any():
        if repair_range and not checker.strict:
            checker.repair(int((out_of_range & ~checker.drop).sum()), f"{field}_out_of_range_set_missing")
            values[out_of_range] = np.nan
        else:
            checker.flag(out_of_range, field, "out_of_range",
                         lambda v: f"expected a value in [{low}, {high}], found {v}", column)
    return values


def _numeric_float(checker, column, field, low, high, optional, repair_range) -> np.ndarray:
    """Typed columns (Parquet): no text round trip; nulls and NaN are missing or errors."""
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    if not values.flags.writeable:
        values = values.copy()
    missing = np.isnan(values)
    if not optional:
        checker.flag(missing, field, "not_finite", lambda v: f"expected a finite number, found {_show(v)}", column)
    infinite = np.isinf(values)
    checker.flag(infinite, field, "not_finite", lambda v: f"expected a finite number, found {_show(v)}", column)
    return _check_range(checker, values, column, field, low, high, repair_range)


def to_timestamp(checker: RowChecker, column: pa.Array, field: str, *, style: str = "seconds") -> np.ndarray:
    """int64 seconds since the epoch, UTC.

    style: 'seconds' (integer or integral float seconds), 'iso' (ISO-8601 such as
    2010-10-19T23:55:27Z or with an offset), 'twitter' (Tue Apr 03 18:00:09 +0000 2012).
    """
    if style == "seconds" and pa.types.is_integer(column.type):
        if column.null_count:
            checker.flag(pc.is_null(column).to_numpy(zero_copy_only=False), field, "missing_value",
                         lambda v: "expected integer seconds, found empty", column)
            column = pc.fill_null(column, -1)
        values = pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)
        checker.flag(values < 0, field, "bad_timestamp",
                     lambda v: f"expected non-negative integer seconds, found {v}", column)
        checker.flag(values > MAX_TIMESTAMP, field, "bad_timestamp",
                     lambda v: f"expected seconds before 2100, found {v} (milliseconds?)", column)
        return values
    if style == "seconds":
        values = to_float(checker, column, field)
        with np.errstate(invalid="ignore"):
            checker.flag(values < 0, field, "bad_timestamp",
                         lambda v: f"expected non-negative integer seconds, found {v}", column)
            checker.flag(values > MAX_TIMESTAMP, field, "bad_timestamp",
                         lambda v: f"expected seconds before 2100, found {v} (milliseconds?)", column)
        values = np.where(checker.drop | ~np.isfinite(values), 0, values)
        return values.astype(np.int64)
    if style == "iso":
        parsed = None
        for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"):
            attempt = pc.strptime(column, format=fmt, unit="s", error_is_null=True)
            parsed = attempt if parsed is None else pc.coalesce(parsed, attempt)
        expected = "an ISO-8601 time such as 2010-10-19T23:55:27Z"
    elif style == "twitter":
        parsed = pc.strptime(column, format="%a %b %d %H:%M:%S %z %Y", unit="s", error_is_null=True)
        expected = "a time such as 'Tue Apr 03 18:00:09 +0000 2012'"
    else:
        raise ValueError(f"unknown timestamp style {style!r}")
    missing = pc.is_null(parsed).to_numpy(zero_copy_only=False)
    checker.flag(missing, field, "bad_timestamp", lambda v: f"expected {expected}, found {_show(v)}", column)
    seconds = pc.cast(pc.cast(parsed, pa.timestamp("s", tz="UTC")), pa.int64())
    values = pc.fill_null(seconds, 0).to_numpy(zero_copy_only=False)
    checker.flag(values < 0, field, "bad_timestamp", lambda v: f"expected a time after 1970, found {_show(v)}", column)
    return values.astype(np.int64)


def to_token(checker: RowChecker, column: pa.Array, field: str) -> pa.Array:
    """Non-empty string ids."""
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        checker.flag(pc.is_null(column).to_numpy(zero_copy_only=False), field, "missing_value",
                     lambda v: "expected an id, found empty", column)
        return pc.cast(pc.fill_null(column, 0) if pa.types.is_integer(column.type) else column, pa.string())
    empty = pc.equal(column, "").to_numpy(zero_copy_only=False)
    checker.flag(empty, field, "missing_value", lambda v: "expected an id, found empty", column)
    return column


def to_int_id(checker: RowChecker, column: pa.Array, field: str) -> pa.Array:
    """Integer ids (MovieLens, SNAP): digits in [0, 2^31 - 1], kept as their string form."""
    to_int(checker, column, field, low=0, high=INT32_MAX, what="an integer id")
    return pc.utf8_ltrim(column, characters="+")


def utc_string(seconds: int) -> str:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
