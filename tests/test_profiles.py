"""User profiles (`stjax.analysis.profiles`, `stjax analyze profiles`): behaviour blocks against a
loop, the planted home regions of the synthetic data recovered, a model's vectors clustered as
given, moves between windows counted another way, and the command with its user errors."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import adjusted_rand_score

from stjax.analysis.profiles import ProfileError, behaviour_blocks, profiles
from stjax.cli import main
from stjax.data.synthetic import generate
from stjax.data.table import make_log


def test_blocks_equal_a_loop():
    # 2001-01-01 was a Monday; hour blocks of 4 hours (UTC).
    monday = 978_307_200
    events = [("a", "x", monday + 3600, 40.0, -74.0), ("a", "y", monday + 86_400 + 5 * 3600, 42.0, -72.0),
              ("b", "x", monday + 6 * 86_400 + 23 * 3600, 10.0, 20.0)]
    log = make_log([e[0] for e in events], [e[1] for e in events], [e[2] for e in events],
                   latitude=[e[3] for e in events], longitude=[e[4] for e in events])
    rows = np.arange(3)
    blocks = behaviour_blocks(log, rows, rows, np.asarray(log.item, np.int64) - 1, 2, np.asarray(log.user) - 1, 2)
    a, b = (0, 1) if log.user_vocab.tokens[1] == "a" else (1, 0)
    np.testing.assert_allclose(blocks["interest"][a], [0.5, 0.5])
    np.testing.assert_allclose(blocks["hours"][a], [0.5, 0.5, 0, 0, 0, 0])  # 01:00 and 05:00
    np.testing.assert_allclose(blocks["hours"][b], [0, 0, 0, 0, 0, 1])  # 23:00
    np.testing.assert_allclose(blocks["weekdays"][a], [0.5, 0.5, 0, 0, 0, 0, 0])  # Monday, Tuesday
    np.testing.assert_allclose(blocks["weekdays"][b], [0, 0, 0, 0, 0, 0, 1])  # Sunday
    np.testing.assert_allclose(blocks["activity"][:, 0][[a, b]], np.log1p([2, 1]))
    np.testing.assert_allclose(blocks["place"][a], [41.0, -73.0])


@pytest.fixture(scope="module")
def synthetic():
    return generate(0)


def test_the_planted_home_regions_are_recovered(synthetic):
    log, truth = synthetic
    regions = truth.user_region[1:]
    out = profiles(log, window="28d", blocks=("place",))
    kinds = np.array([out["membership"][str(token)] for token in log.user_vocab.tokens[1:]])
    # The silhouette joins neighbouring regions (4 kinds of 8 regions here), never splits one.
    for region in range(truth.region_centres.shape[0]):
        assert np.bincount(kinds[regions == region]).max() / (regions == region).sum() >= 0.9, region
    forced = profiles(log, window="28d", blocks=("place",), ks=[8])
    kinds = np.array([forced["membership"][str(token)] for token in log.user_vocab.tokens[1:]])
    assert adjusted_rand_score(regions, kinds) >= 0.75
    # Moves between windows, counted another way: every user active in two consecutive windows.
    active = [set() for _ in out["window_starts"]]
    window = (np.asarray(log.timestamp) - out["window_starts"][0]) // (28 * 86_400)
    for user, w in zip(np.asarray(log.user), window):
        active[w].add(int(user))
    pairs = sum(len(active[w] & active[w + 1]) for w in range(len(active) - 1))
    assert np.sum(out["transitions"]) == pairs
    assert [sum(sizes) for sizes in out["kind_sizes_by_window"]] == [len(users) for users in active]


def test_a_models_vectors_are_clustered_as_given(synthetic):
    log, _ = synthetic
    tokens = log.user_vocab.tokens[1:].astype(str)
    rng = np.random.default_rng(0)
    group = np.arange(len(tokens)) % 2
    vectors = rng.normal(0, 0.1, (len(tokens), 5)) + group[:, None] * 3.0
    out = profiles(log, vectors=(tokens[::-1], vectors[::-1]))  # order of the file does not matter
    assert out["kinds"] == 2 and "transitions" not in out
    kinds = np.array([out["membership"][token] for token in tokens])
    assert adjusted_rand_score(group, kinds) == 1.0
    with pytest.raises(ProfileError, match="only 0 of its users"):
        profiles(log, vectors=(np.array(["nobody"] * 20), vectors[:20]))


def test_cli_and_its_user_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["analyze", "profiles", "--data", "synthetic", "--blocks", "place", "--clusters",
                                  "2-5", "--window", "28d", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    output = json.loads((tmp_path / "out" / "profiles.json").read_text())
    assert set(output["silhouette"]) == {"2", "3", "4", "5"} and len(output["profiles"]) == output["kinds"]
    assert sorted(p.name for p in (tmp_path / "out").glob("profiles-*.png")) == ["profiles-1.png", "profiles-2.png"]
    for args, message in ((["--clusters", "1"], "expected K or LOW-HIGH"), (["--blocks", "mood"], "mood unknown"),
                          (["--vectors", str(tmp_path / "out" / "profiles.json")], "not a Parquet file")):
        result = runner.invoke(main, ["analyze", "profiles", "--data", "synthetic", "--out", str(tmp_path / "x"), *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_same_seed_same_profiles(synthetic):
    log, _ = synthetic
    first, second = (profiles(log, window="28d", blocks=("place",), ks=[3, 4], seed=5) for _ in range(2))
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
