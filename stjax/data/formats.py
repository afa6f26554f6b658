"""Loaders for interaction logs, one per source format, and format detection.

Every loader returns a `Loaded`: the `InteractionLog`, the `RepairReport` of what was
dropped or repaired, and (for social edge lists) the edges. In strict mode (the default) a
bad record raises `DataError` naming file, line and field; in repair mode it is dropped and
counted.

| format | files | ids | time |
|---|---|---|---|
| ml-100k | u.data (tab), u.user, u.item (`|`, latin-1) | integers | seconds |
| ml-1m | ratings.dat, users.dat, movies.dat (`::`, latin-1) | integers | seconds |
| recbole | X.inter, X.user, X.item (tab, typed header `name:type`) | tokens | seconds |
| csv / tsv / parquet | any, with a column mapping | tokens | seconds or ISO-8601 |
| snap | user, ISO time, lat, lon, location (tab; Gowalla, Brightkite) | tokens | ISO-8601 |
| foursquare | user, venue, category id, category, lat, lon, tz offset, UTC time (tab) | tokens | `Tue Apr 03 18:00:09 +0000 2012` |
| stan-npy | X.npy int [N, 3] (user, venue, minutes) + X_POI.npy [M, 3] (venue, lat, lon) | tokens | minutes, relative |
| edges | `user user [weight]` (space or tab) | tokens | none |

`stan-npy` times have no stated origin: they are relative (`Loaded.relative_time`), and
dates derived from them mean nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stjax.data import geo
from stjax.data.errors import DataError, Issue, RepairReport
from stjax.data.table import InteractionLog, Vocab, encode_optional, make_log
from stjax.data.textio import RawTable, read_delimited, release_memory
from stjax.data.validate import (
    INT32_MAX,
    RowChecker,
    to_float,
    to_int,
    to_int_id,
    to_timestamp,
    to_token,
)

FORMATS = ("ml-100k", "ml-1m", "recbole", "csv", "tsv", "parquet", "snap", "foursquare", "stan-npy", "edges")
CANONICAL_COLUMNS = ("user", "item", "timestamp", "behaviour", "value", "latitude", "longitude", "region")
COLUMN_ALIASES = {
    "user": ("user", "user_id", "userid", "uid"),
    "item": ("item", "item_id", "itemid", "iid", "movie_id", "venue_id", "location_id"),
    "timestamp": ("timestamp", "time", "ts", "datetime"),
    "behaviour": ("behaviour", "behavior", "event", "event_type", "action"),
    "value": ("value", "rating", "score", "weight"),
    "latitude": ("latitude", "lat"),
    "longitude": ("longitude", "lon", "lng", "long"),
    "region": ("region", "city", "area"),
}
ML_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


@dataclasses.dataclass
class SocialEdges:
    """Directed user-user edges by original id. senders/receivers: object[edges]; weight: float32[edges]."""

    senders: np.ndarray
    receivers: np.ndarray
    weight: np.ndarray


@dataclasses.dataclass
class Loaded:
    log: InteractionLog | None
    report: RepairReport
    format: str
    files: list[str]
    edges: SocialEdges | None = None
    relative_time: bool = False  # timestamps count from an unknown origin, not from the epoch


def detect_format(path: str | Path) -> str:
    """The format of `path` when unambiguous; DataError asking for --format otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "u.data").exists():
            return "ml-100k"
        if (path / "ratings.dat").exists():
            return "ml-1m"
        inter = sorted(path.glob("*.inter"))
        if len(inter) == 1:
            return "recbole"
        if _stan_pairs(path):
            return "stan-npy"
        raise DataError(f"{path}: cannot tell the format of this directory (expected u.data, ratings.dat, one "
                        f"*.inter file or X.npy with X_POI.npy); pass --format, one of {', '.join(FORMATS)}")
    name = path.name
    if name == "u.data":
        return "ml-100k"
    if name == "ratings.dat":
        return "ml-1m"
    suffix = path.suffix.lower()
    if suffix == ".inter":
        return "recbole"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".npy":
        return "stan-npy"
    with open(path, "rb") as handle:
        first = handle.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    if "\t" in first:
        fields = first.split("\t")
        if len(fields) == 5 and "T" in fields[1] and fields[1][:4].isdigit():
            return "snap"
        if len(fields) == 8 and fields[7][-4:].isdigit() and "+" in fields[7]:
            return "foursquare"
    lowered = first.lower()
    if suffix in (".csv", ".tsv", ".txt") and any(a in lowered for a in COLUMN_ALIASES["user"]):
        return "tsv" if ("\t" in first or suffix == ".tsv") else "csv"
    raise DataError(f"{path}: cannot tell the format of this file; pass --format, one of {', '.join(FORMATS)}")


def load(path: str | Path, format: str | None = None, *, strict: bool = True,
         columns: dict[str, str] | None = None, region_resolution: int = 4) -> Loaded:
    """Loads an interaction log (or an edge list) from `path`. See the module docstring."""
    path = Path(path)
    format = format or detect_format(path)
    if format not in FORMATS:
        raise DataError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    loader = {
        "ml-100k": load_ml100k,
        "ml-1m": load_ml1m,
        "recbole": load_recbole,
        "snap": load_snap,
        "foursquare": load_foursquare,
        "stan-npy": load_stan_npy,
        "edges": load_edges,
    }.get(format)
    if loader is not None:
        kwargs = {"region_resolution": region_resolution} if format in ("snap", "foursquare", "stan-npy") else {}
        loaded = loader(path, strict=strict, **kwargs)
    else:
        loaded = load_table(path, format, strict=strict, columns=columns)
    loaded.report.check()
    return loaded


def _in_dir(path: Path, name: str) -> Path:
    return path / name if path.is_dir() else path.parent / name


def _finish(checker: RowChecker, raw: RawTable, columns: dict) -> dict:
    keep = checker.finish()
    if keep.all():  # the common case: no copies
        return dict(columns)
    out = {}
    for key, column in columns.items():
        if isinstance(column, (pa.Array, pa.ChunkedArray)):
            out[key] = column.filter(pa.array(keep))
        else:
            out[key] = np.asarray(column)[keep]
    return out


def _check_nonempty(rows: dict, report: RepairReport, file: str) -> None:
    if len(rows["timestamp"]) == 0:
        raise DataError(f"{file}: no valid rows left ({report.rows_read} read, all dropped: "
                        + ", ".join(f"{k}={v}" for k, v in report.dropped.items()) + ")")


def _movielens_users(raw: RawTable, strict: bool, report: RepairReport) -> dict:
    checker = RowChecker(raw, strict, RepairReport())
    ids = to_int_id(checker, raw.columns["user"], "user")
    age = to_int(checker, raw.columns["age"], "age", low=0, high=150)
    keep = checker.finish()
    table = {
        "id": np.asarray(ids.to_pylist(), dtype=object)[keep],
        "age": age[keep].astype(np.int32),
        "gender": np.asarray(raw.columns["gender"].to_pylist(), dtype=object)[keep],
        "occupation": np.asarray(raw.columns["occupation"].to_pylist(), dtype=object)[keep],
        "postal_code": np.asarray(raw.columns["zip"].to_pylist(), dtype=object)[keep],
    }
    return _with_postal_locations(table, "postal_code", report)


def _with_postal_locations(table: dict, column: str, report: RepairReport) -> dict:
    """Adds latitude, longitude and state from a ZIP column; unmatched codes are counted."""
    found = geo.lookup_postal_codes(table[column])
    report.repaired["postal_code_unmatched"] += found.num_unmatched
    return table | {"latitude": found.latitude, "longitude": found.longitude, "state": found.state}


def _region_from_users(log: InteractionLog) -> InteractionLog:
    """Events get the region (state) and home coordinates of their user, when known."""
    state = log.users.get("state")
    if state is None:
        return log
    codes, vocab = encode_optional(pa.array(state[log.user].tolist(), pa.string()))
    log.region, log.region_vocab = codes, vocab
    log.latitude = log.users["latitude"][log.user]
    log.longitude = log.users["longitude"][log.user]
    return log


def _movielens_ratings(file: Path, delimiter: str, encoding: str, strict: bool, name: str):
    """user, item, rating, timestamp rows (both MovieLens raw formats) -> (log, report, file)."""
    report = RepairReport()
    raw = read_delimited(file, delimiter=delimiter, names=["user", "item", "rating", "timestamp"],
                         encoding=encoding)
    checker = RowChecker(raw, strict, report)
    user = to_int_id(checker, raw.columns["user"], "user")
    item = to_int_id(checker, raw.columns["item"], "item")
    rating = to_float(checker, raw.columns["rating"], "rating", low=0, high=5)
    stamp = to_timestamp(checker, raw.columns["timestamp"], "timestamp")
    rows = _finish(checker, raw, {"user": user, "item": item, "value": rating, "timestamp": stamp})
    _check_nonempty(rows, report, raw.file)
    log = make_log(rows["user"], rows["item"], rows["timestamp"], value=rows["value"], name=name)
    return log, report, raw.file


def load_ml100k(path: Path, strict: bool = True) -> Loaded:
    log, report, data_file = _movielens_ratings(_in_dir(path, "u.data"), "\t", "utf-8", strict, "ml-100k")
    files = [data_file]
    log = _with_movielens_users(log, _in_dir(path, "u.user"), "|", ["user", "age", "gender", "occupation", "zip"],
                                strict, report, files)
    item_file = _in_dir(path, "u.item")
    if item_file.exists():
        names = ["item", "title", "release_date", "video_release_date", "url", *ML_GENRES]
        items_raw = read_delimited(item_file, delimiter="|", names=names, encoding="latin-1")
        checker = RowChecker(items_raw, strict, RepairReport())
        ids = to_int_id(checker, items_raw.columns["item"], "item")
        flags = np.stack([items_raw.columns[g].to_numpy(zero_copy_only=False) == "1" for g in ML_GENRES], axis=1)
        keep = checker.finish()
        genres = np.asarray(["|".join(g for g, f in zip(ML_GENRES, row) if f) for row in flags], dtype=object)
        log.items = _align({
            "id": np.asarray(ids.to_pylist(), dtype=object)[keep],
            "title": np.asarray(items_raw.columns["title"].to_pylist(), dtype=object)[keep],
            "genres": genres[keep],
        }, log, "item")
        files.append(items_raw.file)
    return Loaded(log, report, "ml-100k", files)


def _with_movielens_users(log: InteractionLog, user_file: Path, delimiter: str, names: list[str], strict: bool,
                          report: RepairReport, files: list[str]) -> InteractionLog:
    """Attach a MovieLens user table (age, gender, occupation, ZIP -> location, region) when the file exists."""
    if not user_file.exists():
        return log
    users_raw = read_delimited(user_file, delimiter=delimiter, names=names, encoding="latin-1")
    log.users = _align(_movielens_users(users_raw, strict, report), log)
    files.append(users_raw.file)
    return _region_from_users(log)


def _align(table: dict, log: InteractionLog, key: str = "user") -> dict:
    from stjax.data.table import align_side_table

    return align_side_table(table, log.user_vocab if key == "user" else log.item_vocab)


def load_ml1m(path: Path, strict: bool = True) -> Loaded:
    log, report, data_file = _movielens_ratings(_in_dir(path, "ratings.dat"), "::", "latin-1", strict, "ml-1m")
    files = [data_file]
    log = _with_movielens_users(log, _in_dir(path, "users.dat"), "::", ["user", "gender", "age", "occupation", "zip"],
                                strict, report, files)
    movie_file = _in_dir(path, "movies.dat")
    if movie_file.exists():
        # Titles contain ':' but never '::'.
        items_raw = read_delimited(movie_file, delimiter="::", names=["item", "title", "genres"],
                                   encoding="latin-1")
        checker = RowChecker(items_raw, strict, RepairReport())
        ids = to_int_id(checker, items_raw.columns["item"], "item")
        keep = checker.finish()
        log.items = _align({
            "id": np.asarray(ids.to_pylist(), dtype=object)[keep],
            "title": np.asarray(items_raw.columns["title"].to_pylist(), dtype=object)[keep],
            "genres": np.asarray(items_raw.columns["genres"].to_pylist(), dtype=object)[keep],
        }, log, "item")
        files.append(items_raw.file)
    return Loaded(log, report, "ml-1m", files)


RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def _recbole_header(file: Path) -> list[tuple[str, str]]:
    with open(file, "rb") as handle:
        first = handle.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    if not first:
        raise DataError([Issue(str(file), None, None, "file is empty", "empty_file")])
    fields = []
    for column in first.split("\t"):
        name, _, kind = column.partition(":")
        if kind not in RECBOLE_TYPES:
            raise DataError([Issue(str(file), 1, name or column,
                                   f"expected a typed header 'name:type' with type in {', '.join(RECBOLE_TYPES)}, "
                                   f"found {column!r}", "header")])
        fields.append((name, kind))
    return fields


def _read_recbole(file: Path, strict: bool) -> tuple[RawTable, dict[str, str]]:
    fields = _recbole_header(file)
    raw = read_delimited(file, delimiter="\t", header=True, names=[n for n, _ in fields])
    return raw, dict(fields)


def load_recbole(path: Path, strict: bool = True) -> Loaded:
    if path.is_dir():
        inter = sorted(path.glob("*.inter"))
        if len(inter) != 1:
            raise DataError(f"{path}: expected exactly one *.inter file, found {len(inter)}")
        path = inter[0]
    report = RepairReport()
    raw, types = _read_recbole(path, strict)
    for required in ("user_id", "item_id"):
        if required not in types:
            raise DataError([Issue(raw.file, 1, required, "missing required column", "header")])
    checker = RowChecker(raw, strict, report)
    user = to_token(checker, raw.columns["user_id"], "user_id")
    item = to_token(checker, raw.columns["item_id"], "item_id")
    columns = {"user": user, "item": item}
    if "timestamp" in types:
        columns["timestamp"] = to_timestamp(checker, raw.columns["timestamp"], "timestamp")
    else:
        # Without time, file order is the sequence order.
        columns["timestamp"] = np.arange(raw.num_rows, dtype=np.int64)
    for name in ("rating", "value", "weight"):
        if name in types:
            columns["value"] = to_float(checker, raw.columns[name], name)
            break
    rows = _finish(checker, raw, columns)
    _check_nonempty(rows, report, raw.file)
    log = make_log(rows["user"], rows["item"], rows["timestamp"], value=rows.get("value"), name=path.stem)
    files = [raw.file]
    user_file = path.with_suffix(".user")
    if user_file.exists():
        users_raw, user_types = _read_recbole(user_file, strict)
        table = {"id": np.asarray(users_raw.columns["user_id"].to_pylist(), dtype=object)}
        for name in user_types:
            if name == "user_id":
                continue
            table[name] = np.asarray(users_raw.columns[name].to_pylist(), dtype=object)
        if "zip_code" in table:
            table = _with_postal_locations(table, "zip_code", report)
        log.users = _align(table, log)
        log = _region_from_users(log)
        files.append(users_raw.file)
    item_file = path.with_suffix(".item")
    if item_file.exists():
        items_raw, item_types = _read_recbole(item_file, strict)
        table = {"id": np.asarray(items_raw.columns["item_id"].to_pylist(), dtype=object)}
        for name in item_types:
            if name != "item_id":
                table[name] = np.asarray(items_raw.columns[name].to_pylist(), dtype=object)
        log.items = _align(table, log, "item")
        files.append(items_raw.file)
    return Loaded(log, report, "recbole", files)


def _resolve_columns(present: list[str], mapping: dict[str, str] | None, file: str) -> dict[str, str]:
    """canonical name -> column in the file."""
    mapping = dict(mapping or {})
    for key in mapping:
        if key not in CANONICAL_COLUMNS:
            raise DataError(f"{file}: unknown column role {key!r} in the mapping; expected one of "
                            f"{', '.join(CANONICAL_COLUMNS)}")
    lowered = {p.lower(): p for p in present}
    resolved = {}
    for canonical in CANONICAL_COLUMNS:
        if canonical in mapping:
            source = mapping[canonical]
            if source not in present:
                raise DataError([Issue(file, 1, source, f"missing column (mapped to {canonical}); found columns: "
                                       f"{', '.join(present)}", "header")])
            resolved[canonical] = source
            continue
        for alias in COLUMN_ALIASES[canonical]:
            if alias in lowered:
                resolved[canonical] = lowered[alias]
                break
    for required in ("user", "item", "timestamp"):
        if required not in resolved:
            raise DataError([Issue(file, 1, required, "missing required column; found columns: " + ", ".join(present)
                                   + " (map one with --columns " + required + "=NAME)", "header")])
    return resolved


class _Encoder:
    """Incremental string -> 1-based code map, so that batches share one vocabulary."""

    def __init__(self):
        self.index: dict[str, int] = {}

    def encode(self, values: pa.Array, optional: bool = False) -> np.ndarray:
        if not pa.types.is_string(values.type):
            values = pc.cast(values, pa.string())
        if optional:
            values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        encoded = pc.dictionary_encode(values)
        local = encoded.dictionary.to_pylist()
        mapping = np.asarray([self.index.setdefault(token, len(self.index) + 1) for token in local] or [0],
                             dtype=np.int32)
        indices = encoded.indices
        if optional and indices.null_count:
            positions = pc.fill_null(indices, -1).to_numpy(zero_copy_only=False)
            return np.where(positions >= 0, mapping[np.maximum(positions, 0)], 0).astype(np.int32)
        return mapping[indices.to_numpy(zero_copy_only=False)]

    def vocab(self) -> Vocab:
        return Vocab.from_tokens(list(self.index))


def _table_rows(raw: RawTable, resolved: dict, checker: RowChecker) -> dict:
    """Typed columns of one batch of a generic table (see load_table)."""
    out = {
        "user": to_token(checker, raw.columns[resolved["user"]], resolved["user"]),
        "item": to_token(checker, raw.columns[resolved["item"]], resolved["item"]),
    }
    ts_column = raw.columns[resolved["timestamp"]]
    style = "seconds"
    if pa.types.is_string(ts_column.type):
        sample = next((v for v in ts_column.slice(0, 100).to_pylist() if v), "0")
        style = "iso" if ("-" in sample[1:] and ":" in sample) else "seconds"
    out["timestamp"] = to_timestamp(checker, ts_column, resolved["timestamp"], style=style)
    if "value" in resolved:
        out["value"] = to_float(checker, raw.columns[resolved["value"]], resolved["value"], optional=True)
    if "latitude" in resolved:
        out["latitude"] = to_float(checker, raw.columns[resolved["latitude"]], resolved["latitude"],
                                   low=-90, high=90, optional=True, repair_range=True)
    if "longitude" in resolved:
        out["longitude"] = to_float(checker, raw.columns[resolved["longitude"]], resolved["longitude"],
                                    low=-180, high=180, optional=True, repair_range=True)
    for role in ("behaviour", "region"):
        if role in resolved:
            out[role] = raw.columns[resolved[role]]
    return _finish(checker, raw, out)


def _parquet_batches(path: Path, columns: dict | None, batch_rows: int):
    """(resolved columns, iterator of RawTable over row batches, total rows) of a Parquet file."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: not a readable Parquet file ({err})") from None
    names = parquet.schema_arrow.names
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError([Issue(str(path), None, dup, "duplicated column name", "header")])
    if parquet.metadata.num_rows == 0:
        raise DataError([Issue(str(path), None, None, "header only, no data rows", "empty_file")])
    resolved = _resolve_columns(names, columns, str(path))
    wanted = sorted(set(resolved.values()), key=names.index)

    def batches():
        offset = 0
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted):
            prepared = {}
            for name in wanted:
                column = batch.column(name)
                if pa.types.is_dictionary(column.type):
                    column = column.cast(column.type.value_type)
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    column = pc.fill_null(column, "")
                elif not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                    column = pc.fill_null(pc.cast(column, pa.string()), "")
                prepared[name] = column
            rows = batch.num_rows
            yield RawTable(str(path), prepared, np.arange(offset, offset + rows, dtype=np.int64) + 1, [], rows)
            offset += rows

    return resolved, batches(), parquet.metadata.num_rows


def load_table(path: Path, format: str, strict: bool = True, columns: dict[str, str] | None = None,
               batch_rows: int = 1_000_000) -> Loaded:
    """Generic CSV / TSV / Parquet with a header and a column mapping.

    Parquet is read in row batches of `batch_rows` and each batch is reduced to compact
    NumPy columns before the next is read, so peak memory stays near the size of the log.
    Errors in Parquet files name the row (1-based).
    """
    report = RepairReport()
    if format == "parquet":
        resolved, batches, total_rows = _parquet_batches(path, columns, batch_rows)
    else:
        delimiter = "\t" if format == "tsv" else ","
        raw = read_delimited(path, delimiter=delimiter, header=True, quote_char='"')
        resolved = _resolve_columns(list(raw.columns), columns, raw.file)
        batches, total_rows = iter([raw]), raw.num_rows
    encoders = {role: _Encoder() for role in ("user", "item", "behaviour", "region")}
    dtypes = {"user": np.int32, "item": np.int32, "timestamp": np.int64, "behaviour": np.int8, "value": np.float32,
              "latitude": np.float32, "longitude": np.float32, "region": np.int32}
    # Columns are filled batch by batch into arrays sized for every row, so there is never a
    # list of parts and their concatenation in memory at once.
    columns_out = {key: np.empty(total_rows, dtype) for key, dtype in dtypes.items()}
    filled = 0
    file = str(path)
    for raw in batches:
        file = raw.file
        checker = RowChecker(raw, strict, report)
        rows = _table_rows(raw, resolved, checker)
        count = len(rows["timestamp"])
        part = slice(filled, filled + count)
        columns_out["user"][part] = encoders["user"].encode(rows["user"])
        columns_out["item"][part] = encoders["item"].encode(rows["item"])
        columns_out["timestamp"][part] = rows["timestamp"]
        columns_out["behaviour"][part] = encoders["behaviour"].encode(rows["behaviour"]) if "behaviour" in rows else 1
        columns_out["region"][part] = encoders["region"].encode(rows["region"], optional=True) if "region" in rows else 0
        for key in ("value", "latitude", "longitude"):
            columns_out[key][part] = rows[key] if key in rows else np.nan
        filled += count
        del rows, raw, checker
        release_memory()
    columns_out = {key: value[:filled] for key, value in columns_out.items()}
    _check_nonempty(columns_out, report, file)
    behaviour_vocab = encoders["behaviour"].vocab() if "behaviour" in resolved else Vocab.from_tokens(["rate"])
    log = InteractionLog(
        user=columns_out["user"], item=columns_out["item"], timestamp=columns_out["timestamp"],
        behaviour=columns_out["behaviour"], value=columns_out["value"], latitude=columns_out["latitude"],
        longitude=columns_out["longitude"], region=columns_out["region"],
        user_vocab=encoders["user"].vocab(), item_vocab=encoders["item"].vocab(), behaviour_vocab=behaviour_vocab,
        region_vocab=encoders["region"].vocab(), name=Path(path).stem)
    return Loaded(log, report, format, [file])


def _add_cells(log: InteractionLog, resolution: int) -> InteractionLog:
    cells = geo.h3_cells(log.latitude, log.longitude, resolution)
    log.region, log.region_vocab = encode_optional(pa.array(cells.tolist(), pa.string()))
    return log


def load_snap(path: Path, strict: bool = True, region_resolution: int = 4) -> Loaded:
    report = RepairReport()
    raw = read_delimited(path, delimiter="\t", names=["user", "time", "latitude", "longitude", "location"])
    checker = RowChecker(raw, strict, report)
    rows = _finish(checker, raw, {
        "user": to_token(checker, raw.columns["user"], "user"),
        "timestamp": to_timestamp(checker, raw.columns["time"], "time", style="iso"),
        "latitude": to_float(checker, raw.columns["latitude"], "latitude", low=-90, high=90),
        "longitude": to_float(checker, raw.columns["longitude"], "longitude", low=-180, high=180),
        "item": to_token(checker, raw.columns["location"], "location"),
    })
    _check_nonempty(rows, report, raw.file)
    log = make_log(rows["user"], rows["item"], rows["timestamp"], latitude=rows["latitude"],
                   longitude=rows["longitude"], default_behaviour="check-in", name=Path(path).stem)
    return Loaded(_add_cells(log, region_resolution), report, "snap", [raw.file])


def load_foursquare(path: Path, strict: bool = True, region_resolution: int = 4) -> Loaded:
    report = RepairReport()
    names = ["user", "venue", "category_id", "category", "latitude", "longitude", "tz_offset", "utc_time"]
    raw = read_delimited(path, delimiter="\t", names=names, encoding="latin-1")
    checker = RowChecker(raw, strict, report)
    rows = _finish(checker, raw, {
        "user": to_token(checker, raw.columns["user"], "user"),
        "item": to_token(checker, raw.columns["venue"], "venue"),
        "category": raw.columns["category"],
        "latitude": to_float(checker, raw.columns["latitude"], "latitude", low=-90, high=90),
        "longitude": to_float(checker, raw.columns["longitude"], "longitude", low=-180, high=180),
        "tz_offset": to_int(checker, raw.columns["tz_offset"], "tz_offset", low=-24 * 60, high=24 * 60,
                            what="minutes"),
        "timestamp": to_timestamp(checker, raw.columns["utc_time"], "utc_time", style="twitter"),
    })
    _check_nonempty(rows, report, raw.file)
    log = make_log(rows["user"], rows["item"], rows["timestamp"], latitude=rows["latitude"],
                   longitude=rows["longitude"], default_behaviour="check-in", name=Path(path).stem)
    # Venue side table: the category and the first coordinates seen for each venue.
    first = np.unique(log.item, return_index=True)[1]
    categories = np.full(len(log.item_vocab), "", dtype=object)
    categories[log.item[first]] = np.asarray(rows["category"].to_pylist(), dtype=object)[first]
    venue_lat = np.full(len(log.item_vocab), np.nan)
    venue_lon = np.full(len(log.item_vocab), np.nan)
    venue_lat[log.item[first]] = log.latitude[first]
    venue_lon[log.item[first]] = log.longitude[first]
    log.items = {"category": categories, "latitude": venue_lat, "longitude": venue_lon}
    log.users = {}
    return Loaded(_add_cells(log, region_resolution), report, "foursquare", [raw.file])


def _stan_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(check-ins, venues) file pairs X.npy + X_POI.npy in `folder`."""
    pairs = []
    for venues in sorted(folder.glob("*_POI.npy")):
        checkins = venues.with_name(venues.name[: -len("_POI.npy")] + ".npy")
        if checkins.is_file():
            pairs.append((checkins, venues))
    return pairs


def _stan_files(path: Path) -> tuple[Path, Path]:
    """The check-in and venue files named by `path`: a folder holding one pair, or either file."""
    if path.is_dir():
        pairs = _stan_pairs(path)
        if len(pairs) != 1:
            found = ", ".join(c.name for c, _ in pairs) or "none"
            raise DataError(f"{path}: expected one pair X.npy + X_POI.npy, found {found}; pass one X.npy file")
        return pairs[0]
    if path.name.endswith("_POI.npy"):
        checkins, venues = path.with_name(path.name[: -len("_POI.npy")] + ".npy"), path
    else:
        checkins, venues = path, path.with_name(path.stem + "_POI.npy")
    for file, role in ((checkins, "check-ins"), (venues, "venue coordinates")):
        if not file.is_file():
            raise DataError(f"{file}: no such file (the {role} of the stan-npy pair {checkins.stem})")
    return checkins, venues


def _read_npy(file: Path, kinds: str, expected: str) -> np.ndarray:
    """A 2-D numeric array with 3 columns from a .npy file, or a DataError saying what was found."""
    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError([Issue(str(file), None, None, f"not a readable .npy array ({err})", "not_npy")]) from None
    if not isinstance(array, np.ndarray):  # an .npz archive under an .npy name
        array.close()
        raise DataError([Issue(str(file), None, None, "expected one .npy array, found an .npz archive", "not_npy")])
    if array.dtype.kind not in kinds or array.ndim != 2 or array.shape[1] != 3:
        shape = ", ".join(str(n) for n in array.shape)
        raise DataError([Issue(str(file), None, None, f"expected {expected}, found {array.dtype} [{shape}]", "shape")])
    if len(array) == 0:
        raise DataError([Issue(str(file), None, None, "no rows", "empty_file")])
    return array


def _npy_rows(file: Path, num_rows: int) -> RawTable:
    """A RawTable that only numbers the rows of an array (1-based), so that RowChecker can locate them."""
    return RawTable(str(file), {}, np.arange(1, num_rows + 1, dtype=np.int64), [], num_rows)


def _stan_venues(file: Path, strict: bool, report: RepairReport) -> dict:
    """Venue id -> coordinates from X_POI.npy: ids int64[M] (sorted), latitude, longitude float64[M].

    Bad rows (non-integer id, coordinates out of range, an id listed twice) are errors in
    strict mode; in repair mode they are dropped and counted as `repaired['venue_rows_dropped']`,
    and their check-ins are then dropped as venues without coordinates.
    """
    array = _read_npy(file, "iuf", "float [M, 3] (venue, latitude, longitude)")
    venue, latitude, longitude = (array[:, k].astype(np.float64) for k in range(3))
    checker = RowChecker(_npy_rows(file, len(array)), strict, RepairReport())
    with np.errstate(invalid="ignore"):
        checker.flag(~np.isfinite(venue) | (venue != np.floor(venue)) | (venue < 0) | (venue > INT32_MAX), "venue",
                     "not_an_id", lambda v: f"expected an integer id in [0, {INT32_MAX}], found {v}", venue)
        for values, field, bound in ((latitude, "latitude", 90), (longitude, "longitude", 180)):
            checker.flag(~np.isfinite(values), field, "not_finite",
                         lambda v: f"expected a finite number, found {v}", values)
            checker.flag(np.abs(values) > bound, field, "out_of_range",
                         lambda v, b=bound: f"expected a value in [-{b}, {b}], found {v}", values)
    ids = np.where(checker.drop, -1, venue).astype(np.int64)
    _, first = np.unique(ids, return_index=True)
    repeated = np.ones(len(ids), dtype=bool)
    repeated[first] = False
    checker.flag(repeated & (ids >= 0), "venue", "duplicate_venue",
                 lambda v: f"venue {v:.0f} is listed twice (venue ids must be unique)", venue)
    keep = checker.finish()
    if not keep.all():
        report.repaired["venue_rows_dropped"] += int((~keep).sum())
    order = np.argsort(ids[keep], kind="stable")
    return {"ids": ids[keep][order], "latitude": latitude[keep][order], "longitude": longitude[keep][order]}


def load_stan_npy(path: Path, strict: bool = True, region_resolution: int = 4) -> Loaded:
    """Check-ins as published with the STAN code (Luo et al., WWW 2021): X.npy + X_POI.npy.

    X.npy: int[N, 3] rows (user id, venue id, time in minutes from an unstated origin), in no
    particular order; X_POI.npy: float[M, 3] rows (venue id, latitude, longitude). Ids become
    tokens ("1", "2", ...); timestamps are minutes * 60, *relative* seconds (the log's
    `relative_time` is set). Each check-in takes its venue's coordinates and the H3 cell of
    them as region. A check-in whose venue has no coordinates is an error in strict mode and
    dropped and counted in repair mode. Exact duplicate rows are kept (`data.dedup` removes
    them) and counted as `repaired['exact_duplicate_rows']`.
    """
    checkins_file, venues_file = _stan_files(Path(path))
    report = RepairReport()
    venues = _stan_venues(venues_file, strict, report)
    array = _read_npy(checkins_file, "iu", "int [N, 3] (user, venue, minutes)")
    user, venue, minutes = (array[:, k].astype(np.int64) for k in range(3))
    checker = RowChecker(_npy_rows(checkins_file, len(array)), strict, report)
    checker.flag(user < 0, "user", "out_of_range", lambda v: f"expected an id >= 0, found {v}", user)
    checker.flag(venue < 0, "venue", "out_of_range", lambda v: f"expected an id >= 0, found {v}", venue)
    checker.flag(minutes < 0, "minutes", "bad_timestamp", lambda v: f"expected minutes >= 0, found {v}", minutes)
    position = np.minimum(np.searchsorted(venues["ids"], venue), max(len(venues["ids"]) - 1, 0))
    located = venues["ids"][position] == venue if len(venues["ids"]) else np.zeros(len(venue), dtype=bool)
    checker.flag(~located, "venue", "venue_without_coordinates",
                 lambda v: f"venue {v} has no coordinates in {venues_file.name}", venue)
    keep = checker.finish()
    _check_nonempty({"timestamp": minutes[keep]}, report, str(checkins_file))
    duplicates = int(keep.sum()) - len(np.unique(array[keep], axis=0))
    if duplicates:
        report.repaired["exact_duplicate_rows"] += duplicates
    position = position[keep]
    log = make_log(user[keep], venue[keep], minutes[keep] * 60,
                   latitude=venues["latitude"][position], longitude=venues["longitude"][position],
                   default_behaviour="check-in", name=checkins_file.stem,
                   items={"id": venues["ids"], "latitude": venues["latitude"], "longitude": venues["longitude"]})
    return Loaded(_add_cells(log, region_resolution), report, "stan-npy", [str(checkins_file), str(venues_file)],
                  relative_time=True)


def _edge_width(path: Path) -> int:
    """How many fields an edge list has (2 or 3), from its first non-blank line."""
    try:
        with open(path, "rb") as handle:
            first = next(((number, fields) for number, line in enumerate(handle, 1)
                          if (fields := line.decode("utf-8", errors="replace").split())), None)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    if first is None:
        raise DataError([Issue(str(path), None, None, "file is empty", "empty_file")])
    number, fields = first
    if len(fields) not in (2, 3):
        raise DataError([Issue(str(path), number, None,
                               f"expected 2 or 3 fields (user user [weight]), found {len(fields)}",
                               "wrong_column_count")])
    return len(fields)


def load_edges(path: Path, strict: bool = True) -> Loaded:
    """Trust/social edge list: `user user [weight]`, fields separated by tabs or spaces (runs of
    them count as one). Weights must be positive and finite (1 when the column is absent)."""
    report = RepairReport()
    raw = read_delimited(path, delimiter=" ", names=["source", "target", "weight"][:_edge_width(path)],
                         whitespace=True)
    width = len(raw.columns)
    checker = RowChecker(raw, strict, report)
    source = to_token(checker, raw.columns["source"], "source")
    target = to_token(checker, raw.columns["target"], "target")
    weight = np.ones(raw.num_rows)
    if width == 3:
        weight = to_float(checker, raw.columns["weight"], "weight")
        checker.flag(weight <= 0, "weight", "not_positive", lambda v: f"expected a positive weight, found {v}",
                     raw.columns["weight"])
    rows = _finish(checker, raw, {"source": source, "target": target, "weight": weight})
    edges = SocialEdges(np.asarray(rows["source"].to_pylist(), dtype=object),
                        np.asarray(rows["target"].to_pylist(), dtype=object),
                        rows["weight"].astype(np.float32))
    return Loaded(None, report, "edges", [raw.file], edges=edges)
