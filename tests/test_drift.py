"""Interest drift (`stjax.analysis.drift`): JSD against SciPy, windows against the calendar, the
planted drift of the synthetic data recovered, a planted regional divergence found where and
when it was planted, Benjamini-Hochberg against a loop, and the CLI."""

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.spatial.distance import jensenshannon

from stjax.analysis.drift import DriftError, _bh, drift, js_divergence, window_starts
from stjax.cli import main
from stjax.data.synthetic import SyntheticConfig, generate
from stjax.data.table import make_log


def test_js_divergence_equals_scipy():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(7), size=5)
    q = rng.dirichlet(np.full(7, 0.3), size=5)
    q[0, :3] = 0  # zeros on one side only
    q[0] /= q[0].sum()
    expected = [jensenshannon(a, b, base=2) ** 2 for a, b in zip(p, q)]
    np.testing.assert_allclose(js_divergence(p, q), expected, rtol=1e-9, atol=1e-12)
    assert js_divergence(p[0], p[0]) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(np.eye(2)[0], np.eye(2)[1]) == pytest.approx(1.0)


def test_windows_follow_the_calendar():
    stamps = np.array([datetime(2001, 1, 31, 23, 59, tzinfo=UTC), datetime(2001, 2, 1, tzinfo=UTC),
                       datetime(2001, 4, 15, tzinfo=UTC), datetime(2001, 1, 1, 5, tzinfo=UTC)])
    seconds = np.array([int(s.timestamp()) for s in stamps])
    index, starts = window_starts(seconds, "month")
    assert index.tolist() == [0, 1, 3, 0]
    assert [datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%d") for s in starts] == [
        "2001-01-01", "2001-02-01", "2001-03-01", "2001-04-01"]
    index, starts = window_starts(seconds, "quarter")
    assert index.tolist() == [0, 0, 1, 0]
    index, starts = window_starts(seconds, "week")  # 2001-01-01 was a Monday
    assert datetime.fromtimestamp(starts[0], UTC).strftime("%Y-%m-%d %a") == "2001-01-01 Mon"
    assert index.tolist() == [(s.date() - stamps[3].date()).days // 7 for s in stamps]
    index, _ = window_starts(seconds, "3d")
    assert index.tolist() == [(s.date() - stamps[3].date()).days // 3 for s in stamps]
    with pytest.raises(DriftError, match="expected day, week, month, quarter or Nd"):
        window_starts(seconds, "fortnight")


def test_benjamini_hochberg_equals_a_loop():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5, 0.002])
    finite = [(value, index) for index, value in enumerate(p) if np.isfinite(value)]
    finite.sort()
    m = len(finite)
    expected = np.full(len(p), np.nan)
    for rank, (_, index) in enumerate(finite, 1):
        expected[index] = min(min(v * m / r for r, (v, _) in enumerate(finite, 1) if r >= rank), 1.0)
    np.testing.assert_allclose(_bh(p), expected)


def test_the_planted_drift_of_each_region_is_recovered():
    # A drift strong enough to rise above the noise of ~1,900 events per (region, 28-day window), and no
    # bots: a bot dumps its whole history on three items into one window, a change no planted drift has.
    log, truth = generate(0, SyntheticConfig(num_events=200_000, drift_strength=5.0, anomalous_fraction=0.0))
    out = drift(log, interest="category", window="28d", bootstrap=100)
    assert len(out["window_starts"]) == truth.drift.shape[1]
    planted_interest = js_divergence(truth.interest[:, :-1], truth.interest[:, 1:])
    planted_drift = js_divergence(truth.drift[:, :-1], truth.drift[:, 1:])
    for region in range(truth.drift.shape[0]):
        curve = np.array(out["regions"][f"region-{region:02d}"]["drift"], float)
        assert np.corrcoef(curve, planted_interest[region])[0, 1] >= 0.9, region
        assert np.corrcoef(curve, planted_drift[region])[0, 1] >= 0.85, region
        low = np.array(out["regions"][f"region-{region:02d}"]["drift_low"], float)
        high = np.array(out["regions"][f"region-{region:02d}"]["drift_high"], float)
        assert (low <= curve + 1e-12).all() and (curve <= high + 1e-12).all()


def planted_divergence_log():
    """3 regions x 6 weekly windows x 600 events on 4 categories, all alike except region 'east' in
    window 3, which prefers category 'd'."""
    rng = np.random.default_rng(5)
    users, items, times, regions = [], [], [], []
    base = 1_000_000_000 - 1_000_000_000 % 86_400 - 3 * 86_400  # a Monday (1970-01-05 + k weeks)
    base -= ((base // 86_400 + 3) % 7) * 86_400
    for region in ("north", "east", "west"):
        for window in range(6):
            shares = np.array([0.4, 0.3, 0.2, 0.1])
            if region == "east" and window == 3:
                shares = np.array([0.1, 0.2, 0.3, 0.4])
            for number, category in enumerate(rng.choice(4, 600, p=shares)):
                users.append(f"{region}-{number % 50}")
                items.append("abcd"[category] + str(rng.integers(3)))
                times.append(base + window * 7 * 86_400 + int(rng.integers(7 * 86_400)))
                regions.append(region)
    log = make_log(users, items, times, region=regions)
    log.items = {"category": np.asarray([""] + [token[0] for token in log.item_vocab.tokens[1:]], dtype=object)}
    return log


def test_a_planted_regional_divergence_is_found_where_and_when():
    out = drift(planted_divergence_log(), interest="category", window="week", bootstrap=200)
    # East is the largest gap; in window 3 the others differ from the global mix too (east is a
    # third of it), so they may be flagged beside it, but in no other window is anyone.
    assert (out["diverging"][0]["region"], out["diverging"][0]["window"]) == ("east", 3)
    assert {entry["window"] for entry in out["diverging"]} == {3}
    assert all(out["diverging"][0]["gap"] > 3 * entry["gap"] for entry in out["diverging"][1:])
    east = out["regions"]["east"]
    moving = {(entry["region"], entry["step"]) for entry in out["moving_more_than_global"]}
    assert moving == {("east", 3), ("east", 4)}  # into window 3 and back out of it
    assert east["drift"][2] > 10 * max(east["drift"][0], east["drift"][1], 1e-4)


def test_cli_writes_json_and_figures_and_refuses_bad_options(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["analyze", "drift", "--data", "synthetic", "--window", "28d", "--bootstrap", "30",
                                  "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    output = json.loads((tmp_path / "out" / "drift.json").read_text())
    assert output["interest"] == "category" and output["regions_analysed"] == 8
    assert sorted(path.name for path in (tmp_path / "out").glob("drift-*.png")) == [
        "drift-1.png", "drift-2.png", "drift-3.png"]
    for args, message in ((["--window", "fortnight"], "expected day, week, month, quarter or Nd"),
                          (["--interest", "genre"], "no item genres"),
                          (["--bootstrap", "5"], "at least 20 resamples")):
        result = runner.invoke(main, ["analyze", "drift", "--data", "synthetic", "--out", str(tmp_path / "x"), *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_visited_areas_as_interest_have_drift_but_no_gap_to_everyone():
    # Areas nest in regions (a region's areas are its own), so a region's gap to the whole is ~1
    # by construction: no test of it, and no per-region curves at all for interest=region.
    log, _ = generate(0, SyntheticConfig(num_users=200, num_items=300, num_events=20_000))
    out = drift(log, interest="area", window="28d", bootstrap=30, area_resolution=5)
    assert out["gap_tested"] is False and out["diverging"] == [] and out["area_resolution"] == 5
    assert all(value is None for region in out["regions"].values() for value in region["gap"])
    assert any(value is not None for region in out["regions"].values() for value in region["drift"])
    out = drift(log, interest="region", window="28d", bootstrap=30)
    assert out["regions"] == {} and any(value is not None for value in out["global"]["drift"])


def test_vector_movement_undoes_the_rotation_and_finds_the_region_that_moved():
    from scipy.stats import special_ortho_group

    from stjax.analysis.drift import vector_movement

    rng = np.random.default_rng(0)
    users = np.asarray([f"u{i}" for i in range(300)], dtype=object)
    before = rng.normal(size=(300, 16))
    rotation = special_ortho_group.rvs(16, random_state=1)  # a retrained model: the same users, turned
    moved = before.copy()
    moved[:60] += 1.5 * rng.normal(size=(60, 16))  # the users of region r1 change their tastes
    after = moved @ rotation
    regions = {str(user): "r1" if i < 60 else "r2" for i, user in enumerate(users)}
    order = rng.permutation(300)  # the second export lists users in another order
    out = vector_movement([("a", users, before), ("b", users[order], after[order])], regions, bootstrap=100)
    step = out["steps"][0]
    assert step["users"] == 300 and step["unaligned_mean"] > 0.5  # without alignment everyone seems to move
    # Written another way: each user's cosine distance between before and the planted change, with no rotation.
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    truth = 1 - np.sum(unit(before) * unit(moved), axis=1)
    assert step["regions"]["r2"]["mean"] < 0.05 and step["regions"]["r1"]["mean"] > 0.2
    assert abs(step["regions"]["r1"]["mean"] - truth[:60].mean()) < 0.1
    assert step["regions_moving_more"] == ["r1"]
    assert {mover["region"] for mover in step["top_movers"]} == {"r1"}
    with pytest.raises(DriftError, match="two or more snapshots"):
        vector_movement([("a", users, before)])


def test_same_seed_same_numbers():
    log = planted_divergence_log()
    first, second = (drift(log, interest="category", window="week", bootstrap=50, seed=3) for _ in range(2))
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    # The bootstrap (the bias correction and the intervals) is what the seed draws.
    other = drift(log, interest="category", window="week", bootstrap=50, seed=4)
    assert first["regions"]["east"]["drift"] != other["regions"]["east"]["drift"]
