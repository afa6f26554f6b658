"""Foursquare NYC (STAN's NYC.npy + NYC_POI.npy): fetch with a faked network, the stan-npy
loader, and the spatial statistics of `stjax data stats`, each against a reference written
another way. Tests never download; one test reads the real mirror at ../shared/data."""

import hashlib
import json
import math
import urllib.error
import urllib.request
from pathlib import Path

import h3
import numpy as np
import pytest
from click.testing import CliRunner

from stjax.cli import main
from stjax.data import DataError, detect_format, load
from stjax.data import fetch as fetch_module
from stjax.data.pipeline import load_source
from stjax.data.preprocess import preprocess
from stjax.data.stats import consecutive_distances_km, summarize
from stjax.data.table import make_log

from .conftest import FIXTURES

FIXTURE = FIXTURES / "foursquare-nyc"
REAL_MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data from the repository

# The fixture, as written by `write_fixture` (a test checks the committed files equal it):
# users 2, 1, 7 interleaved, rows out of time order, row 7 an exact copy of row 1, venue 6 unvisited.
CHECKINS = np.array([
    [2, 3, 500], [1, 2, 120], [1, 1, 30], [7, 5, 1000], [2, 4, 200],
    [1, 4, 240], [2, 3, 500], [7, 1, 900], [1, 2, 90], [2, 5, 650],
], dtype=np.int32)
VENUES = np.array([
    [1, 40.7359, -74.0031], [2, 40.7564, -73.9877], [3, 40.6892, -74.0445],
    [4, 40.7484, -73.9857], [5, 40.8296, -73.9262], [6, 40.7061, -73.9969],
], dtype=np.float64)


def write_fixture(folder: Path, checkins=CHECKINS, venues=VENUES, name="NYC") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{name}.npy", checkins)
    np.save(folder / f"{name}_POI.npy", venues)
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def haversine_loop_km(lat1, lon1, lat2, lon2) -> float:
    """One great-circle distance with the math module (the reference for the NumPy version)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, h)))


def consecutive_loop_km(user, timestamp, latitude, longitude) -> list[float]:
    """Per user, events in time order (ties in row order), distance of each known consecutive pair."""
    by_user: dict = {}
    for row in sorted(range(len(user)), key=lambda r: (int(user[r]), int(timestamp[r]))):
        by_user.setdefault(int(user[row]), []).append(row)
    out = []
    for key in sorted(by_user):
        rows = by_user[key]
        for a, b in zip(rows, rows[1:]):
            coords = (float(latitude[a]), float(longitude[a]), float(latitude[b]), float(longitude[b]))
            if all(math.isfinite(c) for c in coords):
                out.append(haversine_loop_km(*coords))
    return out


# ---------------------------------------------------------------- fetch (network faked)


class _Response:
    def __init__(self, payload: bytes):
        self.payload = payload

    def read(self):
        return self.payload

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def offline(monkeypatch):
    """No network: every URL fails as DNS does on these machines; records the URLs tried."""
    tried = []

    def unreachable(url, timeout):
        tried.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    monkeypatch.delenv(fetch_module.MIRROR_ENV, raising=False)
    return tried


@pytest.fixture
def fixture_sums(monkeypatch):
    """The pinned checksums replaced by those of the tiny fixture files."""
    files = tuple((name, url, sha256(FIXTURE / name)) for name, url, _ in fetch_module.FILES["foursquare-nyc"])
    monkeypatch.setitem(fetch_module.FILES, "foursquare-nyc", files)
    return files


def test_pinned_urls_and_sums_are_those_of_the_data_readme():
    files = {name: (url, digest) for name, url, digest in fetch_module.FILES["foursquare-nyc"]}
    raw = ("https://raw.githubusercontent.com/yingtaoluo/Spatial-Temporal-Attention-Network-for-POI-Recommendation"
           "/master/data/")
    assert files == {
        "NYC.npy": (raw + "NYC.npy", "9e28b974a52d233e201ff9e82e1c076818c90b1e8f25f4ef93daaf1d7e8ddf55"),
        "NYC_POI.npy": (raw + "NYC_POI.npy", "f709f4796ca117d0b96ad2d0201a9869920364e2c476c4362e746740ded08d95"),
    }


def test_offline_fetch_takes_the_mirror_and_verifies_it(tmp_path, offline, fixture_sums):
    messages = []
    target = fetch_module.fetch("foursquare-nyc", tmp_path, mirror=FIXTURES, log=messages.append)
    assert target == tmp_path / "foursquare-nyc"
    for name in ("NYC.npy", "NYC_POI.npy"):
        assert (target / name).read_bytes() == (FIXTURE / name).read_bytes()
    # One unreachable URL is enough: the second file is not tried online.
    assert offline == [fixture_sums[0][1]]
    assert "unreachable" in messages[0] and "sha256 verified" in messages[-1]
    assert not (tmp_path / "foursquare-nyc.partial").exists()


def test_mirror_from_the_environment(tmp_path, offline, fixture_sums, monkeypatch):
    monkeypatch.setenv(fetch_module.MIRROR_ENV, str(FIXTURES))
    target = fetch_module.fetch("foursquare-nyc", tmp_path, log=lambda m: None)
    assert sha256(target / "NYC.npy") == fixture_sums[0][2]


def test_online_fetch_uses_the_urls(tmp_path, monkeypatch, fixture_sums):
    payloads = {url: (FIXTURE / name).read_bytes() for name, url, _ in fixture_sums}
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _Response(payloads[url]))
    target = fetch_module.fetch("foursquare-nyc", tmp_path, log=lambda m: None)  # no mirror needed
    assert (target / "NYC_POI.npy").read_bytes() == payloads[fixture_sums[1][1]]


def test_checksum_mismatch_names_the_file_and_both_hashes(tmp_path, offline, fixture_sums, monkeypatch):
    expected = "0" * 64
    monkeypatch.setitem(fetch_module.FILES, "foursquare-nyc",
                        (fixture_sums[0], (fixture_sums[1][0], fixture_sums[1][1], expected)))
    with pytest.raises(DataError) as err:
        fetch_module.fetch("foursquare-nyc", tmp_path, mirror=FIXTURES, log=lambda m: None)
    message = str(err.value)
    assert "\n" not in message
    assert message == (f"NYC_POI.npy: checksum mismatch: expected sha256 {expected}, found {fixture_sums[1][2]} "
                       f"(from {FIXTURE / 'NYC_POI.npy'})")
    # Nothing half-fetched is left behind, so the next call fetches again.
    assert not (tmp_path / "foursquare-nyc").exists() and not (tmp_path / "foursquare-nyc.partial").exists()


def test_download_with_a_wrong_checksum_is_an_error(tmp_path, monkeypatch, fixture_sums):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _Response(b"not the array"))
    with pytest.raises(DataError, match=r"^NYC.npy: checksum mismatch: expected sha256 [0-9a-f]{64}, found "
                                        + hashlib.sha256(b"not the array").hexdigest()
                                        + r" \(from https://raw.githubusercontent.com/.*/NYC.npy\)$"):
        fetch_module.fetch("foursquare-nyc", tmp_path, mirror=FIXTURES, log=lambda m: None)


def test_offline_without_a_mirror_says_what_to_do(tmp_path, offline):
    with pytest.raises(DataError) as err:
        fetch_module.fetch("foursquare-nyc", tmp_path, log=lambda m: None)
    message = str(err.value)
    assert message.startswith("foursquare-nyc: cannot reach https://raw.githubusercontent.com/yingtaoluo/")
    assert "NYC.npy" in message and "--mirror DIR" in message and "STJAX_DATA_MIRROR" in message
    assert list(tmp_path.iterdir()) == []


def test_mirror_without_the_files(tmp_path, offline):
    with pytest.raises(DataError, match=r"empty/foursquare-nyc/NYC.npy: no such file in the mirror"):
        fetch_module.fetch("foursquare-nyc", tmp_path / "data", mirror=tmp_path / "empty", log=lambda m: None)


def test_sources_are_checked_per_data_set(tmp_path, offline, fixture_sums):
    with pytest.raises(DataError, match="foursquare-nyc: unknown source 'wheel'; expected one of auto, github, mirror"):
        fetch_module.fetch("foursquare-nyc", tmp_path, source="wheel")
    with pytest.raises(DataError, match="ml-100k: a mirror folder is not supported"):
        fetch_module.fetch("ml-100k", tmp_path, mirror=FIXTURES)
    with pytest.raises(DataError, match="cannot reach https://"):
        fetch_module.fetch("foursquare-nyc", tmp_path, source="github", mirror=FIXTURES)
    target = fetch_module.fetch("foursquare-nyc", tmp_path, source="mirror", mirror=FIXTURES, log=lambda m: None)
    assert offline == [fixture_sums[0][1]]  # only the 'github' call tried the network
    assert sorted(p.name for p in target.iterdir()) == ["NYC.npy", "NYC_POI.npy"]


def test_cli_fetch_with_mirror(tmp_path, offline, fixture_sums):
    result = CliRunner().invoke(main, ["data", "fetch", "foursquare-nyc", "--dest", str(tmp_path),
                                       "--mirror", str(FIXTURES)])
    assert result.exit_code == 0, result.output
    assert f"data in {tmp_path / 'foursquare-nyc'}" in result.output
    result = CliRunner().invoke(main, ["data", "fetch", "foursquare-nyc", "--dest", str(tmp_path / "other")])
    assert result.exit_code == 2 and "pass --mirror DIR or set STJAX_DATA_MIRROR" in result.output


def test_pipeline_fetches_on_first_use(tmp_path, offline, fixture_sums, monkeypatch):
    monkeypatch.setenv(fetch_module.MIRROR_ENV, str(FIXTURES))
    config = {"source": "foursquare-nyc", "data_dir": str(tmp_path)}
    log, report, truth = load_source(config, log=lambda m: None)
    assert (tmp_path / "foursquare-nyc" / "NYC.npy").exists() and truth is None
    assert len(log) == len(CHECKINS) and report.repaired["exact_duplicate_rows"] == 1
    monkeypatch.delenv(fetch_module.MIRROR_ENV)
    again, _, _ = load_source(config, log=lambda m: None)  # second use: no fetch, no mirror needed
    np.testing.assert_array_equal(again.timestamp, log.timestamp)


@pytest.mark.skipif(not (REAL_MIRROR / "foursquare-nyc" / "NYC.npy").exists(),
                    reason=f"the real Foursquare NYC mirror is not at {REAL_MIRROR}/foursquare-nyc")
def test_real_mirror_fetch_load_and_stats(tmp_path, offline):
    """The published files: pinned sums (not patched), the numbers of the mirror's README."""
    target = fetch_module.fetch("foursquare-nyc", tmp_path, mirror=REAL_MIRROR, log=lambda m: None)
    loaded = load(target)
    log = loaded.log
    assert loaded.format == "stan-npy" and loaded.relative_time
    assert (len(log), log.num_users, log.num_items) == (147_938, 1_083, 5_135)
    assert list(log.user_vocab.tokens[1:]) == [str(u) for u in range(1, 1084)]
    assert loaded.report.repaired["exact_duplicate_rows"] == 458
    assert 40.5 < log.latitude.min() and log.latitude.max() < 41.0
    assert -74.3 < log.longitude.min() and log.longitude.max() < -73.6
    stats = summarize(log, relative_time=True)
    assert stats["span_days"] == round((458_435 - 1) * 60 / 86400, 1)
    assert stats["regions"] == 4 and stats["region_kind"] == "H3 cells, resolution 4"
    reference = consecutive_loop_km(log.user, log.timestamp, log.latitude, log.longitude)
    distances = stats["consecutive_km"]
    assert distances["pairs"] == len(reference) == 147_938 - 1_083
    assert distances["p50"] == pytest.approx(np.percentile(reference, 50), abs=1e-3)
    assert distances["p90"] == pytest.approx(np.percentile(reference, 90), abs=1e-3)
    assert distances["max"] == pytest.approx(max(reference), abs=1e-3)
    cleaned = preprocess(log, dedup=True)
    assert len(cleaned) == 147_938 - 458


# ---------------------------------------------------------------- the stan-npy loader


def test_committed_fixture_is_the_one_written_here(tmp_path):
    written = write_fixture(tmp_path / "foursquare-nyc")
    for name in ("NYC.npy", "NYC_POI.npy"):
        committed, expected = np.load(FIXTURE / name), np.load(written / name)
        assert committed.dtype == expected.dtype
        np.testing.assert_array_equal(committed, expected)


def test_format_is_detected(tmp_path):
    assert detect_format(FIXTURE) == "stan-npy"
    assert detect_format(FIXTURE / "NYC.npy") == "stan-npy"
    other = write_fixture(tmp_path / "tky", name="TKY")  # 'similar names': X.npy + X_POI.npy
    assert detect_format(other) == "stan-npy"
    assert load(other).log.name == "TKY"
    assert load(FIXTURE / "NYC_POI.npy").files == load(FIXTURE).files


def test_loader_against_the_rows(fixtures):
    loaded = load(fixtures / "foursquare-nyc")
    log = loaded.log
    assert loaded.format == "stan-npy" and loaded.relative_time
    assert loaded.report.as_dict() == {"rows_read": 10, "kept": 10, "dropped": {},
                                       "repaired": {"exact_duplicate_rows": 1}}
    assert list(log.user_vocab.tokens[1:]) == ["2", "1", "7"]  # tokens, in order of first appearance
    assert list(log.behaviour_vocab.decode(log.behaviour)) == ["check-in"] * 10
    coordinates = {int(v): (lat, lon) for v, lat, lon in VENUES}
    for row, (user, venue, minutes) in enumerate(CHECKINS):
        assert log.user_vocab.tokens[log.user[row]] == str(user)
        assert log.item_vocab.tokens[log.item[row]] == str(venue)
        assert log.timestamp[row] == minutes * 60
        lat, lon = coordinates[int(venue)]
        assert log.latitude[row] == pytest.approx(lat, abs=1e-5)
        assert log.longitude[row] == pytest.approx(lon, abs=1e-5)
        assert log.region_vocab.tokens[log.region[row]] == h3.latlng_to_cell(lat, lon, 4)
    venue5 = log.item_vocab.index["5"]
    assert log.items["latitude"][venue5] == 40.8296 and log.items["longitude"][venue5] == -73.9262
    assert "6" not in log.item_vocab.index  # a venue without check-ins is no item
    assert load(fixtures / "foursquare-nyc", region_resolution=9).log.region_vocab.size == 5


def test_pipeline_sorts_by_user_and_time_and_dedup_removes_the_copy(fixtures):
    log = load(fixtures / "foursquare-nyc").log
    kept = preprocess(log)
    rows = [(int(u), int(t)) for u, t in zip(kept.user, kept.timestamp)]
    assert rows == sorted(rows)  # user codes 1, 2, 3 are users "2", "1", "7"
    assert sorted(zip(kept.user_vocab.decode(kept.user), kept.timestamp.tolist())) == sorted(
        (str(u), int(m) * 60) for u, _, m in CHECKINS)
    assert len(preprocess(log, dedup=True)) == 9


def _bad(tmp_path, checkins=CHECKINS, venues=VENUES) -> Path:
    return write_fixture(tmp_path / "bad", checkins, venues)


@pytest.mark.parametrize("checkins, venues, message", [
    (np.zeros((10, 2)), VENUES, "NYC.npy: expected int [N, 3] (user, venue, minutes), found float64 [10, 2]"),
    (CHECKINS.astype(np.float32), VENUES, "NYC.npy: expected int [N, 3] (user, venue, minutes), found float32 [10, 3]"),
    (CHECKINS[:, 0], VENUES, "NYC.npy: expected int [N, 3] (user, venue, minutes), found int32 [10]"),
    (CHECKINS[:0], VENUES, "NYC.npy: no rows"),
    (CHECKINS, VENUES[:, :2], "NYC_POI.npy: expected float [M, 3] (venue, latitude, longitude), found float64 [6, 2]"),
    (CHECKINS, VENUES.astype(str), "NYC_POI.npy: expected float [M, 3] (venue, latitude, longitude), found <U32 [6, 3]"),
])
def test_malformed_arrays_give_one_located_line(tmp_path, checkins, venues, message):
    folder = _bad(tmp_path, checkins, venues)
    with pytest.raises(DataError) as err:
        load(folder, "stan-npy")
    assert str(err.value) == f"{folder}/{message}"


def test_unreadable_and_pickled_files(tmp_path):
    folder = _bad(tmp_path)
    (folder / "NYC.npy").write_bytes(b"user venue minutes\n1 2 3\n")
    with pytest.raises(DataError, match=r"^.*/NYC.npy: not a readable .npy array \("):
        load(folder)
    np.save(folder / "NYC.npy", np.array([[1, 2, "x"]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"NYC.npy: not a readable .npy array \(Object arrays cannot be loaded"):
        load(folder)
    (folder / "NYC_POI.npy").unlink()
    with pytest.raises(DataError, match=r"NYC_POI.npy: no such file \(the venue coordinates of the stan-npy pair NYC\)"):
        load(folder / "NYC.npy")


def test_bad_rows_strict_and_repair(tmp_path):
    checkins = CHECKINS.copy()
    checkins[3, 1] = 9  # venue without coordinates
    checkins[8, 2] = -5  # negative time
    venues = VENUES.copy()
    venues[3, 1] = 95.0  # venue 4: latitude out of range
    folder = _bad(tmp_path, checkins, venues)
    with pytest.raises(DataError) as err:
        load(folder)
    assert str(err.value) == f"{folder}/NYC_POI.npy:4: field 'latitude': expected a value in [-90, 90], found 95.0"
    loaded = load(folder, strict=False)
    report = loaded.report
    # Venue 4 is dropped from the venues, so its two check-ins (rows 5 and 6) lose their coordinates.
    assert report.repaired["venue_rows_dropped"] == 1
    assert dict(report.dropped) == {"venue_without_coordinates": 3, "bad_timestamp": 1}
    assert report.kept + report.total_dropped == report.rows_read == 10
    assert len(loaded.log) == 6 and "4" not in loaded.log.item_vocab.index
    folder = _bad(tmp_path, checkins, VENUES)
    with pytest.raises(DataError) as err:
        load(folder)
    assert str(err.value).splitlines() == [
        f"{folder}/NYC.npy:4: field 'venue': venue 9 has no coordinates in NYC_POI.npy",
        f"{folder}/NYC.npy:9: field 'minutes': expected minutes >= 0, found -5",
    ]


def test_venue_listed_twice(tmp_path):
    venues = VENUES.copy()
    venues[5, 0] = 2
    folder = _bad(tmp_path, CHECKINS, venues)
    with pytest.raises(DataError, match=r"NYC_POI.npy:6: field 'venue': venue 2 is listed twice"):
        load(folder)
    venues[5, 0] = 2.5
    with pytest.raises(DataError, match=r"NYC_POI.npy:6: field 'venue': expected an integer id in \[0, 2147483647\], "
                                        r"found 2.5"):
        load(_bad(tmp_path, CHECKINS, venues))


def test_cli_validate_notes_the_duplicates(fixtures):
    result = CliRunner().invoke(main, ["data", "validate", str(fixtures / "foursquare-nyc")])
    assert result.exit_code == 0, result.output
    assert "(stan-npy): 10 events, 3 users, 5 items" in result.output
    assert "note: exact_duplicate_rows: 1" in result.output


# ---------------------------------------------------------------- spatial statistics


def test_consecutive_distances_against_a_loop_on_random_logs():
    rng = np.random.default_rng(7)
    events = 301
    user = rng.integers(1, 12, events)
    timestamp = rng.integers(0, 40, events)  # many ties: the row order decides them
    latitude = rng.uniform(-80, 80, events)
    longitude = rng.uniform(-179, 179, events)
    latitude[rng.random(events) < 0.1] = np.nan
    log = make_log(user, rng.integers(1, 30, events), timestamp, latitude=latitude, longitude=longitude)
    reference = consecutive_loop_km(log.user, log.timestamp, log.latitude, log.longitude)
    distances = consecutive_distances_km(log)
    assert len(distances) == len(reference) > 200
    np.testing.assert_allclose(distances, reference, rtol=1e-9, atol=1e-9)


def test_stats_of_the_fixture(fixtures):
    loaded = load(fixtures / "foursquare-nyc")
    stats = summarize(loaded.log, relative_time=True)
    assert stats["time"] == "relative" and stats["first_event"] == "t = 1,800 s"
    assert stats["last_event"] == "t = 60,000 s" and stats["span_days"] == round(58_200 / 86400, 1)
    cells = {h3.latlng_to_cell(lat, lon, 4) for v, lat, lon in VENUES if v in CHECKINS[:, 1]}
    assert stats["regions"] == len(cells) == 2 and stats["region_kind"] == "H3 cells, resolution 4"
    # By hand: per user in time order, the venues visited.
    coordinates = {int(v): (lat, lon) for v, lat, lon in VENUES}
    paths = {1: [1, 2, 2, 4], 2: [4, 3, 3, 5], 7: [1, 5]}
    reference = [haversine_loop_km(*coordinates[a], *coordinates[b])
                 for path in paths.values() for a, b in zip(path, path[1:])]
    distances = stats["consecutive_km"]
    assert distances["pairs"] == 7 and distances["zero_share"] == round(2 / 7, 4)
    assert distances["p50"] == pytest.approx(np.median(reference), abs=1e-3)
    assert distances["max"] == pytest.approx(max(reference), abs=1e-3)


def test_cli_stats_of_the_fixture(fixtures):
    result = CliRunner().invoke(main, ["data", "stats", str(fixtures / "foursquare-nyc")])
    assert result.exit_code == 0, result.output
    for text in ("time span (relative time)", "time origin", "t = 1,800 s", "consecutive km p50/p90/max",
                 "regions (H3 cells, resolution 4)", "note: exact_duplicate_rows"):
        assert text in result.output, text
    result = CliRunner().invoke(main, ["data", "stats", str(fixtures / "foursquare-nyc"), "--json",
                                       "--region-resolution", "9"])
    stats = json.loads(result.output)
    assert stats["regions"] == 5 and stats["consecutive_km"]["pairs"] == 7
    assert stats["load_report"]["repaired"] == {"exact_duplicate_rows": 1}


def test_movielens_stats_have_no_movement_and_keep_dates(fixtures):
    """MovieLens coordinates are the users' homes: no distances; time stays UTC dates."""
    stats = summarize(load(fixtures / "ml-100k").log)
    assert "consecutive_km" not in stats and stats["time"] == "UTC"
    assert stats["first_event"].startswith("199") and stats["region_kind"] == "named regions"
