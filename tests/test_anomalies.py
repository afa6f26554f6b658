"""Anomalous users (`stjax.analysis.anomalies`, `stjax anomalies`): behaviour features against a
loop, the measures against pair counts, the planted anomalies of the synthetic data found, the
VAE's per-user scores against NumPy, and the command on a tiny Mult-VAE run with its report."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from stjax.analysis.anomalies import behaviour_features, evaluate, isolation_scores, percentiles
from stjax.cli import main
from stjax.config import load_config
from stjax.data.batching import relative_times, user_histories
from stjax.data.synthetic import generate
from stjax.report import run_report
from stjax.train import train_and_evaluate
from stjax.train.build import build_run

ROOT = Path(__file__).resolve().parents[1]


def test_features_equal_a_loop():
    # user 0: a bot (every 600 s, one item); user 1: a burst inside an hour; user 2: irregular, rated.
    times = [[0, 600, 1200, 1800, 2400], [10, 20, 900, 3000, 3500, 90_000], [0, 5000, 86_400 * 3, 86_400 * 9]]
    items = [[1, 1, 1, 1, 1], [2, 3, 2, 4, 5, 2], [6, 1, 2, 7]]
    values = [[5, 5, 5, 5, 5], [1, 2, 3, 4, 5, 1], [3, 3, 4, 2]]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in times])])
    flat = [np.concatenate(x) for x in (items, times, values)]
    names, features = behaviour_features(offsets, flat[0], flat[1], flat[2].astype(np.float32))
    assert names == ["events", "active_days", "gap_cv", "gap_mode_share", "burst_share", "breadth", "popularity",
                     "value_spread", "value_mean_gap"]
    count = np.bincount(flat[0])
    item_mean = {i: flat[2][flat[0] == i].mean() for i in set(flat[0].tolist())}
    for user, (t, it, v) in enumerate(zip(times, items, values)):
        gaps = np.diff(t)
        modes = max(sum(1 for g in gaps if g // 60 == m // 60) for m in gaps)
        burst = max(sum(1 for other in t if start <= other < start + 3600) for start in t)
        expected = [len(t), len({x // 86_400 for x in t}), gaps.std() / gaps.mean(), modes / len(gaps), burst / len(t),
                    len(set(it)) / len(it), np.mean([np.log1p(count[i]) for i in it]), np.std(v),
                    np.mean([abs(a - item_mean[i]) for a, i in zip(v, it)])]
        np.testing.assert_allclose(features[user], expected, rtol=1e-6, err_msg=str(user))
    assert features[0, names.index("gap_cv")] == 0 and features[0, names.index("gap_mode_share")] == 1
    # Without values the value features are left out, not filled with zeros.
    assert behaviour_features(offsets, flat[0], flat[1])[0][-1] == "popularity"


def test_measures_against_pair_counts():
    rng = np.random.default_rng(2)
    truth = rng.random(200) < 0.1
    scores = rng.random(200) + truth * 0.6
    result = evaluate(scores, truth)
    positives, negatives = scores[truth], scores[~truth]
    pairs = np.mean([(p > n) + 0.5 * (p == n) for p in positives for n in negatives])
    assert result["roc_auc"] == pytest.approx(pairs)
    top = np.argsort(-scores)[:20]
    assert result["precision@20"] == truth[top].sum() / 20
    assert result["recall@20"] == truth[top].sum() / truth.sum()
    count = int(truth.sum())
    assert result["r_precision"] == truth[np.argsort(-scores)[:count]].sum() / count
    np.testing.assert_allclose(percentiles(np.array([3.0, 1.0, 2.0, 2.0])), [1.0, 0.0, 0.5, 0.5])


def test_the_planted_anomalies_are_found():
    log, truth = generate(0)
    times, _ = relative_times(log)
    saved = user_histories(log, times)
    offsets = saved["offsets"][1:]  # user 0 is padding
    _, features = behaviour_features(offsets, saved["items"], saved["timestamps"], saved["values"])
    scores = isolation_scores(features, seed=0)
    planted = np.isin(np.arange(1, len(offsets)), truth.anomalous_users)
    result = evaluate(scores, planted)
    assert planted.sum() == 20 and result["roc_auc"] >= 0.9 and result["recall@50"] >= 0.9, result


def test_vae_example_scores_equal_numpy():
    config = load_config(str(ROOT / "experiments" / "multvae_ml100k.py") + ":tiny", [])
    run = build_run(config, log=lambda m: None)
    batch = {k: jnp.asarray(v) for k, v in run.iterator.batch(0, 1).items()}
    batch["weights"] = batch["weights"].at[2].set(0.0)
    variables = {"params": run.state.params}
    scores = run.spec.example_scores(run.module, variables, batch, context={}, config=config.model)
    logits, mean, log_variance = (np.asarray(x, np.float64) for x in
                                  run.module.apply(variables, batch["bag"], deterministic=True))
    bag = np.asarray(batch["bag"])
    for row in (0, 1, 2):
        items = sorted(set(bag[row].tolist()) - {0})
        log_softmax = logits[row] - np.log(np.exp(logits[row] - logits[row].max()).sum()) - logits[row].max()
        weight = float(batch["weights"][row])
        assert float(scores["loss"][row]) == pytest.approx(-weight * sum(log_softmax[i - 1] for i in items), rel=1e-4)
        assert float(scores["targets"][row]) == weight * len(items)
        kl = 0.5 * np.sum(np.exp(log_variance[row]) + mean[row] ** 2 - 1.0 - log_variance[row])
        assert float(scores["kl"][row]) == pytest.approx(weight * kl, rel=1e-4, abs=1e-6)


def test_cli_on_a_vae_run_and_its_report(tmp_path):
    config = load_config(str(ROOT / "experiments" / "multvae_synthetic.py") + ":tiny", [])
    train_and_evaluate(config, tmp_path / "run", log=lambda m: None, progress=False)
    runner = CliRunner()
    result = runner.invoke(main, ["anomalies", "--workdir", str(tmp_path / "run"), "--top", "5", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    methods = {"isolation_forest", "reconstruction", "latent_kl", "combined"}
    assert len(rows) == 5 and all(set(row["methods"]) == methods for row in rows)
    assert [row["score"] for row in rows] == sorted((row["score"] for row in rows), reverse=True)
    assert all(row["score"] == row["methods"]["isolation_forest"] for row in rows)
    output = json.loads((tmp_path / "run" / "analysis" / "anomalies.json").read_text())
    assert set(output["evaluation"]) == methods
    assert all(e["anomalous"] >= 1 and 0.0 <= e["roc_auc"] <= 1.0 for e in output["evaluation"].values())
    # The combined score is the mean rank percentile of the three methods, written another way.
    users = list(output["scores"]["combined"])
    ranks = []
    for method in ("isolation_forest", "reconstruction", "latent_kl"):
        values = np.array([output["scores"][method][u] for u in users])
        below = (values[None, :] < values[:, None]).sum(1)
        ties = (values[None, :] == values[:, None]).sum(1) - 1  # ties share their mean rank
        ranks.append((below + 0.5 * ties) / (len(users) - 1))
    np.testing.assert_allclose([output["scores"]["combined"][u] for u in users], np.mean(ranks, axis=0), atol=1e-5)
    result = runner.invoke(main, ["anomalies", "--workdir", str(tmp_path / "run"), "--top", "3", "--rank-by",
                                  "combined"])
    assert result.exit_code == 0 and "combined against the" in result.output, result.output
    result = runner.invoke(main, ["anomalies", "--workdir", str(tmp_path / "run"), "--rank-by", "votes"])
    assert result.exit_code == 2 and "this run has the methods" in result.output
    _, sections = run_report(tmp_path / "run", tmp_path / "report.html")
    anomalies = next(section for section in sections if section.title == "Analysis: anomalous users")
    assert anomalies.figures and anomalies.tables and not anomalies.missing
    result = runner.invoke(main, ["anomalies", "--workdir", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not a run folder" in result.output
