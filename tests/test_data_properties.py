"""Property tests: random tables round-trip; random corruption never gives a traceback."""

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stjax.data import DataError, load, make_log

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-,\" ", min_size=1, max_size=6).filter(
    lambda s: s.strip() == s and s.strip())
rows = st.lists(
    st.tuples(token, token, st.integers(0, 2_000_000_000), st.sampled_from(["view", "click", "buy"]),
              st.floats(-90, 90, allow_nan=False), st.floats(-180, 180, allow_nan=False)),
    min_size=1, max_size=30)
SETTINGS = settings(max_examples=int(__import__("os").environ.get("STJAX_HYPOTHESIS_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _log(data):
    users, items, times, behaviours, lats, lons = map(list, zip(*data))
    return make_log(users, items, times, behaviour=behaviours, latitude=lats, longitude=lons)


def _same(a, b):
    np.testing.assert_array_equal(a.user_vocab.decode(a.user), b.user_vocab.decode(b.user))
    np.testing.assert_array_equal(a.item_vocab.decode(a.item), b.item_vocab.decode(b.item))
    np.testing.assert_array_equal(a.timestamp, b.timestamp)
    np.testing.assert_array_equal(a.behaviour_vocab.decode(a.behaviour), b.behaviour_vocab.decode(b.behaviour))
    np.testing.assert_allclose(a.latitude, b.latitude, rtol=1e-12)
    np.testing.assert_allclose(a.longitude, b.longitude, rtol=1e-12)


@SETTINGS
@given(rows)
def test_round_trip_csv_and_parquet(tmp_path, data):
    log = _log(data)
    table = log.to_arrow().drop_columns(["value", "region"])
    pacsv.write_csv(table, tmp_path / "log.csv")
    pq.write_table(table, tmp_path / "log.parquet")
    _same(log, load(tmp_path / "log.csv", "csv").log)
    _same(log, load(tmp_path / "log.parquet").log)


VALID_TSV = "".join(f"u{i % 4}\t2010-10-1{i % 9}T2{i % 4}:55:27Z\t{30 + i / 7:.4f}\t{-97 - i / 9:.4f}\tloc{i % 5}\n"
                    for i in range(25)).encode()


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(VALID_TSV) - 1), st.binary(min_size=0, max_size=3)),
                min_size=1, max_size=6))
def test_random_corruption_gives_clean_error_or_consistent_repair(tmp_path, edits):
    data = bytearray(VALID_TSV)
    for position, replacement in edits:
        data[position:position + 1] = replacement
    path = tmp_path / "checkins.txt"
    path.write_bytes(bytes(data))
    try:
        load(path, "snap")
    except DataError as err:
        assert str(err)
    try:
        loaded = load(path, "snap", strict=False)
    except DataError as err:  # e.g. every row dropped, or an empty file
        assert str(err)
    else:
        report = loaded.report
        assert report.kept + report.total_dropped == report.rows_read
        assert len(loaded.log) == report.kept
