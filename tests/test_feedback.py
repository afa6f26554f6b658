"""The feedback loop (`stjax.analysis.feedback`, `stjax analyze feedback`): the planted preferences
against a loop over the generator's rules, Gini and the round measures against hand-made cases, and
the command end to end (a model trained, shown, updated on the choices; a rerun continues; same
seed, same curves)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from stjax.analysis.feedback import gini, preferences, round_metrics
from stjax.cli import main
from stjax.data.synthetic import SyntheticConfig, generate


def test_preferences_follow_the_generators_rules():
    _, truth = generate(3, SyntheticConfig(num_users=20, num_items=60, num_events=400))
    p = preferences(truth, 20, 60)
    assert p.shape == (21, 61) and np.allclose(p[1:].sum(axis=1), 1.0) and not p[0].any() and not p[:, 0].any()
    regions = truth.drift.shape[0]
    for user in (1, 7, 20):
        region = truth.user_region[user]
        expected = np.zeros(61)
        for item in range(1, 61):
            mix = 0.5 * truth.drift[region, -1, truth.item_category[item]] + 0.5 * truth.taste[user, truth.item_category[item]]
            group = [j for j in range(1, 61) if truth.item_category[j] == truth.item_category[item]
                     and truth.item_region[j] == truth.item_region[item]]
            rank = sorted(group, key=lambda j: (-truth.item_popularity[j], j)).index(item)
            n = len(group)
            local = 0.75 * (truth.item_region[item] == region) + 0.25 / regions
            expected[item] = mix * local * (np.sqrt((rank + 1) / n) - np.sqrt(rank / n))
        np.testing.assert_allclose(p[user], expected / expected.sum(), rtol=1e-9)


def test_gini_and_the_round_measures_on_hand_made_lists():
    assert gini(np.array([3, 3, 3, 3])) == pytest.approx(0.0)
    counts = np.array([0, 1, 2, 7])
    pairs = np.abs(counts[:, None] - counts[None, :]).sum()
    assert gini(counts) == pytest.approx(pairs / (2 * len(counts) ** 2 * counts.mean()))  # mean-difference form
    p = np.zeros((3, 6))
    p[1, 1:] = [0.4, 0.3, 0.2, 0.1, 0.0]
    p[2, 1:] = [0.0, 0.1, 0.2, 0.3, 0.4]
    user_region = np.array([-1, 0, 1])
    best = round_metrics(np.array([[1, 2], [5, 4]]), np.array([1, 2]), p, [set(), set()], user_region, 5)
    assert best["hr"] == best["recall"] == best["utility"] == pytest.approx(1.0)
    assert best["coverage"] == pytest.approx(4 / 5) and best["regional_jsd"] == pytest.approx(1.0)  # disjoint lists
    # User 1 has consumed item 1: its true top-2 is then {2, 3}; the same list for both users.
    same = round_metrics(np.array([[2, 3], [2, 3]]), np.array([1, 2]), p, [{1}, set()], user_region, 5)
    assert same["hr"] == pytest.approx(0.5) and same["recall"] == pytest.approx(0.5)
    assert same["utility"] == pytest.approx((1.0 + 0.3 / 0.7) / 2) and same["regional_jsd"] == pytest.approx(0.0)
    assert same["coverage"] == pytest.approx(2 / 5) and same["gini"] == pytest.approx(gini(np.array([0, 2, 2, 0, 0])))


def _simulate(out):
    return CliRunner().invoke(main, ["analyze", "feedback", "--data", "synthetic", "--config",
                                     "experiments/sasrec_synthetic.py:tiny", "--rounds", "2", "--k", "5",
                                     "--update-epochs", "1", "--out", str(out)])


def test_the_command_shows_chooses_updates_and_continues(tmp_path):
    result = _simulate(tmp_path / "a")
    assert result.exit_code == 0, result.output
    output = json.loads((tmp_path / "a" / "feedback.json").read_text())
    assert [line["round"] for line in output["rounds"]] == [0, 1, 2]
    assert all(0.0 <= line["hr"] <= 1.0 and 0.0 < line["coverage"] <= 1.0 for line in output["rounds"])
    updates = (tmp_path / "a" / "run" / "updates.jsonl").read_text().splitlines()
    assert len(updates) == 2  # one stjax update per round of choices
    chosen = (tmp_path / "a" / "run" / "feedback" / "round-0.tsv").read_text().splitlines()
    assert len(chosen) == 1 + 64  # every user takes one item
    assert sorted(p.name for p in (tmp_path / "a").glob("feedback-*.png")) == ["feedback-1.png", "feedback-2.png"]
    again = _simulate(tmp_path / "a")  # finished: read back, nothing trained or updated again
    assert again.exit_code == 0 and json.loads((tmp_path / "a" / "feedback.json").read_text()) == output
    assert len((tmp_path / "a" / "run" / "updates.jsonl").read_text().splitlines()) == 2
    bad = CliRunner().invoke(main, ["analyze", "feedback", "--data", "ml-1m", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "only the synthetic data" in bad.output


@pytest.mark.slow
def test_same_seed_same_curves(tmp_path):
    assert _simulate(tmp_path / "a").exit_code == 0 and _simulate(tmp_path / "b").exit_code == 0
    first, second = (json.loads((tmp_path / name / "feedback.json").read_text())["rounds"] for name in "ab")
    assert first == second
