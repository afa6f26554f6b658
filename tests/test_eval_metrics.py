"""Metrics against a brute-force NumPy reference on random score matrices with ties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stjax.eval.metrics import METRICS, mask_scores, rank_metrics, target_rank, target_ranks

KS = (1, 3, 5, 10, 20)  # 20 > W: K larger than the catalogue
# jit: one compile per shape instead of one per eager op keeps the file fast.
jit_ranks = jax.jit(target_ranks)
jit_metrics = jax.jit(rank_metrics, static_argnums=2)


def brute_force(scores, targets, exclude, ks):
    """Textbook metrics per row from an explicit sorted list; targets int[B, M], 0 = padding."""
    out = {f"{m}@{k}": [] for k in ks for m in METRICS}
    for row in range(scores.shape[0]):
        s = scores[row].astype(float).copy()
        s[0] = -np.inf
        for item in exclude[row]:
            if item:
                s[item] = -np.inf
        # Sort by (-score, item id): ties go to the smaller id.
        order = sorted(range(len(s)), key=lambda i: (-s[i], i))
        relevant = {int(t) for t in targets[row] if t}
        n = len(relevant)
        for k in ks:
            hits, dcg, first = 0, 0.0, None
            for position, item in enumerate(order[:k]):
                if item in relevant:
                    hits += 1
                    dcg += 1.0 / np.log2(position + 2)
                    first = position if first is None else first
            idcg = sum(1.0 / np.log2(i + 2) for i in range(min(n, k)))
            precision = hits / k
            recall = hits / n if n else 0.0
            out[f"hr@{k}"].append(float(hits > 0))
            out[f"recall@{k}"].append(recall)
            out[f"capped_recall@{k}"].append(hits / min(k, n) if n else 0.0)
            out[f"precision@{k}"].append(precision)
            out[f"ndcg@{k}"].append(dcg / idcg if n else 0.0)
            out[f"mrr@{k}"].append(0.0 if first is None else 1.0 / (first + 1))
            out[f"f1@{k}"].append(
                0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
            )
    return {name: np.asarray(v) for name, v in out.items()}


def check_against_brute_force(scores, targets, exclude, ks=KS):
    masked = mask_scores(jnp.asarray(scores), jnp.asarray(exclude))
    ranks = jit_ranks(masked, jnp.asarray(targets))
    ours = jit_metrics(ranks, jnp.asarray(targets) > 0, ks)
    reference = brute_force(scores, targets, exclude, ks)
    assert set(ours) == set(reference)
    for name, values in reference.items():
        assert ours[name].shape == (scores.shape[0],) and ours[name].dtype == jnp.float32
        np.testing.assert_allclose(ours[name], values, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_brute_force_with_ties(seed):
    """One target per row, through the single-target wrapper."""
    rng = np.random.default_rng(seed)
    rows, items = 11, 37
    scores = rng.integers(0, 5, (rows, items)).astype(np.float32)  # many ties
    targets = rng.integers(1, items, rows)
    exclude = rng.integers(0, items, (rows, 6))
    exclude = np.where(exclude == targets[:, None], 0, exclude)
    masked = mask_scores(jnp.asarray(scores), jnp.asarray(exclude))
    ranks = jax.jit(target_rank)(masked, jnp.asarray(targets))
    assert ranks.shape == (rows,) and ranks.dtype == jnp.int32
    ours = jit_metrics(ranks[:, None], jnp.ones((rows, 1), bool), KS)
    reference = brute_force(scores, targets[:, None], exclude, KS)
    for name, values in reference.items():
        np.testing.assert_allclose(ours[name], values, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("m", [1, 3, 7])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_multi_target_metrics_equal_brute_force(m, seed):
    rng = np.random.default_rng(100 * m + seed)
    rows, width = 5, 13
    scores = rng.integers(0, 4, (rows, width)).astype(np.float32)  # few values: many ties
    targets = np.stack([rng.choice(np.arange(1, width), m, replace=False) for _ in range(rows)])
    pad = rng.random((rows, m)) < 0.3  # padding anywhere in the row
    pad[0, 0], pad[1] = False, True  # row 0 has a target, row 1 has none
    targets = np.where(pad, 0, targets)
    # Masked entries, targets included sometimes (they then tie at -inf with lower-id items).
    exclude = rng.integers(0, width, (rows, 4))
    check_against_brute_force(scores, targets.astype(np.int32), exclude)


def old_rank_metrics(ranks, ks):
    """The single-target formulas before the multi-target generalisation; ranks int[B]."""
    r = ranks.astype(jnp.float32)
    out = {}
    for k in ks:
        hit = (r < k).astype(jnp.float32)
        out |= {f"hr@{k}": hit, f"recall@{k}": hit, f"capped_recall@{k}": hit}
        out |= {f"ndcg@{k}": hit / jnp.log2(r + 2.0), f"mrr@{k}": hit / (r + 1.0)}
        out |= {f"precision@{k}": hit / k, f"f1@{k}": 2.0 * hit / (k + 1.0)}
    return out


def test_single_target_equals_old_formulas_exactly():
    rng = np.random.default_rng(7)
    rows, width = 11, 37
    scores = jnp.asarray(rng.integers(0, 6, (rows, width)).astype(np.float32))
    targets = jnp.asarray(rng.integers(1, width, rows).astype(np.int32))
    ranks = jax.jit(target_rank)(scores, targets)
    np.testing.assert_array_equal(ranks, jit_ranks(scores, targets[:, None])[:, 0])
    ours = jit_metrics(ranks[:, None], jnp.ones((rows, 1), bool), KS)
    old = jax.jit(old_rank_metrics, static_argnums=1)(ranks, KS)
    assert set(ours) == set(old)
    for name, values in old.items():
        np.testing.assert_array_equal(ours[name], values, err_msg=name)


def test_hand_computed_case():
    # Scores by item id 0..5 (0 = padding, masked): the ranking by (-score, id) is
    # 2 (0.9), 4 (0.9, tie lost to the smaller id 2), 1 (0.5), 5 (0.3), 3 (0.1), 0 (-inf).
    row = [-np.inf, 0.5, 0.9, 0.1, 0.9, 0.3]
    scores = jnp.asarray([row, row, row], jnp.float32)
    targets = jnp.asarray([[4, 3, 0], [2, 1, 5], [0, 0, 0]], jnp.int32)
    ranks = jit_ranks(scores, targets)
    np.testing.assert_array_equal(ranks[:2], [[1, 4, 5], [0, 2, 3]])  # pad slot's rank unused
    got = jit_metrics(ranks, targets > 0, (2, 5))
    l3, l4, l5, l6 = 1 / np.log2(3), 1 / np.log2(4), 1 / np.log2(5), 1 / np.log2(6)
    expected = {
        # Row 0: n = 2, ranks {1, 4}.  K=2: hits = 1;  K=5: hits = 2.
        # Row 1: n = 3, ranks {0, 2, 3}.  K=2: hits = 1;  K=5: hits = 3.  Row 2: no target -> 0.
        "hr@2": [1, 1, 0],
        "recall@2": [1 / 2, 1 / 3, 0],
        "capped_recall@2": [1 / 2, 1 / 2, 0],  # 1 / min(2, 2), 1 / min(2, 3)
        # ndcg row 0: (1/log2 3) / (1 + 1/log2 3) = 0.6309 / 1.6309 = 0.38685
        # ndcg row 1: 1 / (1 + 1/log2 3) = 0.61315
        "ndcg@2": [0.38685281, 0.61314719, 0],
        "mrr@2": [1 / 2, 1, 0],  # best ranks 1 and 0
        "precision@2": [1 / 2, 1 / 2, 0],
        # f1 = 2PR/(P+R): row 0: 2 * .5 * .5 / 1 = .5;  row 1: 2 * .5 * (1/3) / (5/6) = 0.4
        "f1@2": [0.5, 0.4, 0],
        "hr@5": [1, 1, 0],
        "recall@5": [1, 1, 0],
        "capped_recall@5": [1, 1, 0],  # 2 / min(5, 2), 3 / min(5, 3)
        # ndcg row 0: (1/log2 3 + 1/log2 6) / (1 + 1/log2 3)
        #           = (0.63093 + 0.38685) / 1.63093 = 0.62405
        # ndcg row 1: (1 + 1/log2 4 + 1/log2 5) / (1 + 1/log2 3 + 1/log2 4)
        #           = (1 + 0.5 + 0.43068) / (1 + 0.63093 + 0.5) = 1.93068 / 2.13093 = 0.90603
        "ndcg@5": [0.62405052, 0.90602544, 0],
        "mrr@5": [1 / 2, 1, 0],
        "precision@5": [2 / 5, 3 / 5, 0],
        # f1 row 0: 2 * .4 * 1 / 1.4 = 0.571429;  row 1: 2 * .6 * 1 / 1.6 = 0.75
        "f1@5": [0.57142857, 0.75, 0],
    }
    np.testing.assert_allclose(expected["ndcg@2"][:2], [l3 / (1 + l3), 1 / (1 + l3)], rtol=1e-7)
    np.testing.assert_allclose(
        expected["ndcg@5"][:2], [(l3 + l6) / (1 + l3), (1 + l4 + l5) / (1 + l3 + l4)], rtol=1e-7
    )
    assert set(got) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(got[name], values, atol=1e-6, err_msg=name)


def test_jit_target_ranks_equals_eager_and_no_nan():
    rng = np.random.default_rng(3)
    scores = jnp.asarray(rng.integers(0, 3, (5, 13)).astype(np.float32)).at[:, :3].set(-jnp.inf)
    targets = jnp.asarray(rng.integers(0, 13, (5, 4)).astype(np.int32)).at[2].set(0)
    eager = target_ranks(scores, targets)
    np.testing.assert_array_equal(jax.jit(target_ranks)(scores, targets), eager)
    metrics = jit_metrics(eager, targets > 0, KS)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in metrics.values())
    assert all(float(v[2]) == 0.0 for v in metrics.values())  # the empty row
