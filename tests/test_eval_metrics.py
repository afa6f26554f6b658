"""Metrics against a brute-force NumPy reference on random score matrices with ties."""

import jax.numpy as jnp
import numpy as np
import pytest

from stjax.eval.metrics import mask_scores, rank_metrics, target_rank


def brute_force(scores, targets, exclude, ks):
    out = {f"{m}@{k}": [] for k in ks for m in ("hr", "ndcg", "mrr", "recall", "precision", "f1")}
    for row in range(scores.shape[0]):
        s = scores[row].astype(float).copy()
        s[0] = -np.inf
        for item in exclude[row]:
            if item:
                s[item] = -np.inf
        # Sort by (-score, item id): ties go to the smaller id.
        order = sorted(range(len(s)), key=lambda i: (-s[i], i))
        rank = order.index(targets[row])
        for k in ks:
            hit = 1.0 if rank < k else 0.0
            precision, recall = hit / k, hit
            out[f"hr@{k}"].append(hit)
            out[f"recall@{k}"].append(recall)
            out[f"precision@{k}"].append(precision)
            out[f"ndcg@{k}"].append(hit / np.log2(rank + 2))
            out[f"mrr@{k}"].append(hit / (rank + 1))
            out[f"f1@{k}"].append(0.0 if hit == 0 else 2 * precision * recall / (precision + recall))
    return {name: np.asarray(v) for name, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    rows, items = 11, 37
    scores = rng.integers(0, 5, (rows, items)).astype(np.float32)  # many ties
    targets = rng.integers(1, items, rows)
    exclude = rng.integers(0, items, (rows, 6))
    exclude = np.where(exclude == targets[:, None], 0, exclude)
    ks = (1, 5, 10)
    masked = mask_scores(jnp.asarray(scores), jnp.asarray(exclude))
    ours = rank_metrics(target_rank(masked, jnp.asarray(targets)), ks)
    reference = brute_force(scores, targets, exclude, ks)
    for name, values in reference.items():
        np.testing.assert_allclose(ours[name], values, atol=1e-6, err_msg=name)
