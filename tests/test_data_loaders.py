"""Every loader on small fixtures; every malformed fixture gives its located error."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from stjax.cli import main
from stjax.data import DataError, load
from stjax.data.formats import detect_format

from .conftest import FIXTURES


def test_ml100k_raw(fixtures):
    loaded = load(fixtures / "ml-100k")
    log = loaded.log
    assert loaded.format == "ml-100k"
    assert len(log) == 6 and log.num_users == 3 and log.num_items == 3
    assert log.user_vocab.tokens[0] == "<pad>"
    assert sorted(log.user_vocab.tokens[1:]) == ["186", "196", "22"]
    np.testing.assert_array_equal(log.value, [3, 3, 1, 4, 5, 2])
    assert log.items["title"][log.item_vocab.index["242"]] == "Kolya (1996)"
    assert log.items["genres"][log.item_vocab.index["302"]] == "Crime|Film-Noir|Thriller"
    # 55105 is St Paul MN; 00000 is not a ZIP code and is counted, not guessed.
    u196 = log.user_vocab.index["196"]
    assert log.users["state"][u196] == "MN"
    assert abs(log.users["latitude"][u196] - 44.9) < 0.3
    assert loaded.report.repaired["postal_code_unmatched"] == 1
    assert log.region_vocab.tokens[log.region[0]] == "MN"


def test_ml1m_raw(fixtures):
    loaded = load(fixtures / "ml-1m")
    log = loaded.log
    assert loaded.format == "ml-1m" and len(log) == 4
    assert log.items["genres"][log.item_vocab.index["661"]] == "Animation|Children's|Musical"
    assert log.items["title"][log.item_vocab.index["1193"]] == "One Flew Over the Cuckoo's Nest (1975)"
    assert log.users["gender"][log.user_vocab.index["1"]] == "F"


def test_recbole_atomic(fixtures):
    loaded = load(fixtures / "recbole" / "tiny.inter")
    log = loaded.log
    assert loaded.format == "recbole"
    np.testing.assert_array_equal(log.timestamp, [100, 200, 150, 300])
    assert log.items["title"][log.item_vocab.index["c"]] == "Gamma"
    assert log.users["state"][log.user_vocab.index["u1"]] == "NY"
    assert loaded.report.repaired["postal_code_unmatched"] == 1


def test_generic_csv_with_quotes_and_mapping(fixtures):
    loaded = load(fixtures / "generic.csv", columns={"user": "uid", "item": "iid", "timestamp": "ts",
                                                      "behaviour": "event", "value": "price"})
    log = loaded.log
    assert list(log.item_vocab.tokens[1:]) == ["p1", "p,2"]
    assert list(log.behaviour_vocab.decode(log.behaviour)) == ["view", "purchase", "click"]
    assert np.isnan(log.value[0]) and log.value[1] == pytest.approx(9.5)
    np.testing.assert_allclose(log.latitude, [40.7, 40.7, 34.0])
    assert list(log.region_vocab.decode(log.region)) == ["nyc", "nyc", "la"]


def test_generic_tsv_iso_times(fixtures):
    log = load(fixtures / "generic.tsv").log
    np.testing.assert_array_equal(log.timestamp, [1609556645, 1609556646])


def test_snap_checkins(fixtures):
    loaded = load(fixtures / "checkins_snap.txt")
    assert loaded.format == "snap"
    log = loaded.log
    assert log.timestamp[0] == 1287532527  # 2010-10-19T23:55:27Z
    assert list(log.behaviour_vocab.tokens[1:]) == ["check-in"]
    assert log.region_vocab.size >= 1 and (log.region > 0).all()


def test_foursquare(fixtures):
    loaded = load(fixtures / "foursquare_tsmc.txt")
    assert loaded.format == "foursquare"
    log = loaded.log
    assert log.timestamp[0] == 1333476009  # Tue Apr 03 18:00:09 UTC 2012
    assert log.items["category"][1] == "Arts & Crafts Store"


def test_edges(fixtures):
    loaded = load(fixtures / "trust.txt", "edges")
    assert list(loaded.edges.senders) == ["1", "2", "3"]
    np.testing.assert_allclose(loaded.edges.weight, [1, 1, 0.5])


def test_ambiguous_format_asks_for_format(fixtures):
    with pytest.raises(DataError, match="pass --format"):
        detect_format(fixtures / "trust.txt")


MALFORMED = [
    ("bad_column_count", None, "bad_column_count/u.data:3: expected 4 fields, found 3"),
    ("bad_rating", None, "bad_rating/u.data:2: field 'rating': expected a number, found 'five'"),
    ("nan_timestamp", None, "nan_timestamp/u.data:3: field 'timestamp': expected a finite number, found 'NaN'"),
    ("negative_timestamp", None, "negative_timestamp/u.data:1: field 'timestamp': expected non-negative integer seconds, found -5"),
    ("millis_timestamp", None, "millis_timestamp/u.data:2: field 'timestamp': expected seconds before 2100, found 1700000000000 (milliseconds?)"),
    ("user_id_overflow", None, "user_id_overflow/u.data:2: field 'user': value 99999999999 exceeds 2147483647"),
    ("int64_overflow", None, "int64_overflow/u.data:2: field 'item': value 123456789012345678901234 overflows a 64-bit integer"),
    ("empty_line", None, "empty_line/u.data:3: empty line"),
    ("ml1m_fields", None, "ml1m_fields/ratings.dat:2: expected 4 fields, found 5"),
    ("lat_range.txt", "snap", "lat_range.txt:1: field 'latitude': expected a value in [-90, 90], found 91.5"),
    ("lon_range.txt", "snap", "lon_range.txt:2: field 'longitude': expected a value in [-180, 180], found 200"),
    ("bad_iso_time.txt", "snap", "bad_iso_time.txt:2: field 'time': expected an ISO-8601 time such as 2010-10-19T23:55:27Z, found 'yesterday'"),
    ("bad_twitter_time.txt", "foursquare", "bad_twitter_time.txt:2: field 'utc_time': expected a time such as 'Tue Apr 03 18:00:09 +0000 2012', found '2012-04-03 18:00'"),
    ("empty.csv", "csv", "empty.csv: file is empty"),
    ("header_only.csv", "csv", "header_only.csv: header only, no data rows"),
    ("missing_column.csv", "csv", "missing_column.csv:1: field 'timestamp': missing required column; found columns: user, item, rating"),
    ("duplicated_column.csv", "csv", "duplicated_column.csv:1: field 'user': duplicated column name"),
    ("undecodable.csv", "csv", "undecodable.csv:3: undecodable bytes for encoding utf-8 at column 3"),
    ("bad_header.inter", None, "bad_header.inter:1: field 'rating': expected a typed header 'name:type' with type in token, token_seq, float, float_seq, found 'rating:number'"),
    ("bad_weight_edges.txt", "edges", "bad_weight_edges.txt:2: field 'weight': expected a number, found 'heavy'"),
]


@pytest.mark.parametrize("name,format_,expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_fixture_error(name, format_, expected):
    path = FIXTURES / "malformed" / name
    with pytest.raises(DataError) as info:
        load(path, format_)
    assert expected in str(info.value).splitlines()[0].replace(str(FIXTURES / "malformed") + "/", "")


@pytest.mark.parametrize("name,format_,expected", MALFORMED[:6] + MALFORMED[9:12], ids=lambda x: str(x)[:20])
def test_malformed_fixture_cli_exit_status(name, format_, expected):
    args = ["data", "validate", str(FIXTURES / "malformed" / name)] + (["--format", format_] if format_ else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert expected.split(":", 1)[1] in result.output
    assert "Traceback" not in result.output


def test_strict_lists_up_to_20_errors(tmp_path):
    lines = ["1\t2\t3\t100"] + [f"1\t{i}\tbad\t101" for i in range(30)]
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load(tmp_path)
    message = str(info.value).splitlines()
    assert len(message) == 21
    assert message[0].endswith("u.data:2: field 'rating': expected a number, found 'bad'")
    assert message[-1] == "... and 10 more errors"


def test_repair_mode_counts_add_up(tmp_path):
    text = "1\t2\t3\t100\n1\t3\tfive\t101\n1\t4\n\n2\t3\t4\tNaN\n2\t4\t4\t102\n"
    (tmp_path / "u.data").write_text(text)
    loaded = load(tmp_path, strict=False)
    report = loaded.report
    assert report.rows_read == 6
    assert report.kept == 2 == len(loaded.log)
    assert dict(report.dropped) == {"not_a_number": 1, "wrong_column_count": 1, "empty_line": 1, "not_finite": 1}


def test_cli_validate_repair_writes_clean_file(tmp_path):
    bad = FIXTURES / "malformed" / "lon_range.txt"
    out = tmp_path / "clean.parquet"
    result = CliRunner().invoke(main, ["data", "validate", str(bad), "--format", "snap", "--repair", str(out)])
    assert result.exit_code == 0, result.output
    assert "rows read 2 = kept 1 + dropped 1" in result.output
    assert load(out).log.num_users == 1


def test_cli_validate_ok_and_stats(fixtures, tmp_path):
    # A long path must not make the console wrap the summary line (CI clones under a deep directory).
    deep = tmp_path / ("deep_" * 20) / "ml-100k"
    shutil.copytree(fixtures / "ml-100k", deep)
    result = CliRunner().invoke(main, ["data", "validate", str(deep)])
    assert result.exit_code == 0, result.output
    summary = result.output.splitlines()[0]
    assert summary.startswith("valid: ") and summary.endswith("(ml-100k): 6 events, 3 users, 3 items"), summary
    result = CliRunner().invoke(main, ["data", "stats", str(fixtures / "ml-1m")])
    assert result.exit_code == 0 and "events" in result.output


def test_cli_missing_file_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["data", "stats", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2 and "no such file" in result.output
