"""EASE's closed form against a per-column constrained least squares, its scores through the
engine, and the Mult-VAE protocol's data options (ratings >= threshold, held-out user counts)."""

import numpy as np
import pytest

from stjax.config import base_config, tiny
from stjax.data.errors import RepairReport
from stjax.data.preprocess import keep_min_value, preprocess
from stjax.data.splits import TEST, TRAIN, VALID, held_out_users
from stjax.models.ease import ease_weights
from stjax.train import train_and_evaluate
from tests.test_data_pipeline import random_log


def reference_weights(x: np.ndarray, l2: float) -> np.ndarray:
    """Column j: argmin ||x_j - X b||^2 + l2 ||b||^2 with b_j = 0, solved without column j."""
    items = x.shape[1]
    out = np.zeros((items, items))
    for j in range(items):
        others = [i for i in range(items) if i != j]
        a = x[:, others]
        out[others, j] = np.linalg.solve(a.T @ a + l2 * np.eye(len(others)), a.T @ x[:, j])
    return out


def test_closed_form_equals_per_column_least_squares():
    rng = np.random.default_rng(0)
    bags = np.zeros((40, 6), np.int32)
    x = np.zeros((40, 9))
    for user in range(40):
        chosen = rng.choice(np.arange(1, 10), rng.integers(1, 7), replace=False)
        bags[user, :len(chosen)] = chosen
        x[user, chosen - 1] = 1.0
    weights = ease_weights(bags, 9, l2=3.0, rows=12)
    assert weights.shape == (12, 12) and not weights[0].any() and not weights[:, 10:].any()
    np.testing.assert_allclose(weights[1:10, 1:10], reference_weights(x, 3.0), rtol=1e-4, atol=1e-6)
    assert np.allclose(np.diag(weights), 0.0)


def test_ease_trains_and_ranks_held_out_users_through_the_engine(tmp_path):
    """The engine's fold-in NDCG@10 equals NumPy's from multi-hot(fold-in items) @ B."""
    from stjax.train.build import build_run

    config = tiny(base_config("ease"))
    config.data.split = "held_out_users"
    config.data.valid_users, config.data.test_users = 10, 12
    config.eval.evaluators = ("fold_in",)
    config.train.num_steps = 1
    config.model.l2 = 10.0
    results = train_and_evaluate(config, tmp_path, log=lambda m: None, progress=False)
    assert results["valid"]["num_users"] == 10 and results["test"]["num_users"] == 12
    run = build_run(config, log=lambda m: None)
    weights = np.asarray(run.context["weights"], np.float64)
    examples, num_items = run.prepared.sequences.test, run.info.num_items
    ndcgs = []
    for bag, targets, exclude in zip(examples["bag"], examples["targets"], examples["exclude"]):
        hot = np.zeros(weights.shape[0])
        hot[bag[bag > 0]] = 1.0
        row = hot @ weights
        row[0] = -np.inf
        row[num_items + 1:] = -np.inf
        row[exclude[exclude > 0]] = -np.inf
        ranks = [int((row > row[t]).sum() + (row[:t] == row[t]).sum()) for t in targets[targets > 0]]
        dcg = sum(1 / np.log2(r + 2) for r in ranks if r < 10)
        ndcgs.append(dcg / sum(1 / np.log2(i + 2) for i in range(min(len(ranks), 10))))
    np.testing.assert_allclose(results["test"]["ndcg@10"], np.mean(ndcgs), rtol=1e-5)


def test_ratings_below_the_threshold_are_dropped_and_counted():
    log = random_log(2)
    log.value = (np.arange(len(log)) % 5 + 1).astype(np.float32)  # ratings 1..5
    report = RepairReport(rows_read=len(log), kept=len(log))
    kept = keep_min_value(log, 4.0, report)
    assert (kept.value >= 4).all() and len(kept) == int((log.value >= 4).sum())
    assert report.dropped["below_min_value"] == len(log) - len(kept) and report.kept == len(kept)
    log.value = np.full(len(log), np.nan, np.float32)
    with pytest.raises(ValueError, match="the log has no value column"):
        keep_min_value(log, 4.0)


def test_held_out_users_by_count():
    log = preprocess(random_log(3))
    split = held_out_users(log, seed=1, valid_users=3, test_users=4)
    users = {part: set(np.unique(log.user[split.part == part])) for part in (TRAIN, VALID, TEST)}
    assert len(users[VALID]) == 3 and len(users[TEST]) == 4
    assert not (users[TRAIN] & users[VALID]) and not (users[TRAIN] & users[TEST]) and not (users[VALID] & users[TEST])
    with pytest.raises(ValueError, match="leave no training user"):
        held_out_users(log, valid_users=len(np.unique(log.user)), test_users=1)
