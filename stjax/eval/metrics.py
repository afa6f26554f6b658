"""Ranking metrics from the ranks of up to M held-out targets per row, as RecBole defines them.

r_j (0-based) is the rank of target j among all items of the row, ties broken by item id (an
item with the same score and a smaller id ranks ahead). Over the n valid (non-padding) targets
of a row, with hits@K = #{j : r_j < K} and r* = min_j r_j:

  HR@K           = [hits@K > 0]
  Recall@K       = hits@K / n                        (RecBole)
  CappedRecall@K = hits@K / min(K, n)                (Mult-VAE's normalised recall)
  NDCG@K         = DCG@K / IDCG@K,  DCG@K = sum_{j: r_j < K} 1 / log2(r_j + 2),
                   IDCG@K = sum_{i < min(n, K)} 1 / log2(i + 2)
  MRR@K          = [r* < K] / (r* + 1)
  Precision@K    = hits@K / K
  F1@K           = 2 P R / (P + R) = 2 hits@K / (K + n)   (0 when hits@K = 0)

Rows with n = 0 score 0 everywhere. At M = 1 (n = 1, hit = [r < K]) these reduce to
HR = Recall = CappedRecall = hit, NDCG = hit / log2(r + 2), MRR = hit / (r + 1),
Precision = hit / K, F1 = 2 hit / (K + 1). Targets within a row are assumed distinct.
Metrics are averaged over evaluation rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

METRICS = ("hr", "ndcg", "mrr", "recall", "capped_recall", "precision", "f1")


def target_ranks(scores: jax.Array, targets: jax.Array) -> jax.Array:
    """0-based rank int32[B, M] of each target in its row's full ranking.

    scores: float[B, W] (masked entries -inf); targets: int32[B, M] (0 = padding, its rank is
    meaningless). Uses a [B, M, W] comparison.
    """
    if targets.shape[1] == 1:  # static: one target per row (leave-one-out) compares [B, W], not [B, 1, W]
        target = targets[:, 0]
        target_score = jnp.take_along_axis(scores, target[:, None], axis=1)  # [B, 1]
        items = jnp.arange(scores.shape[1])[None, :]
        ahead = (scores > target_score) | ((scores == target_score) & (items < target[:, None]))
        return jnp.sum(ahead, axis=1).astype(jnp.int32)[:, None]
    target_score = jnp.take_along_axis(scores, targets, axis=1)[:, :, None]  # [B, M, 1]
    row = scores[:, None, :]  # [B, 1, W]
    items = jnp.arange(scores.shape[1])[None, None, :]
    ahead = (row > target_score) | ((row == target_score) & (items < targets[:, :, None]))
    return jnp.sum(ahead, axis=-1).astype(jnp.int32)


def target_rank(scores: jax.Array, targets: jax.Array) -> jax.Array:
    """0-based rank int32[B] of one target int32[B] per row; scores float[B, W]."""
    return target_ranks(scores, targets[:, None])[:, 0]


def rank_metrics(ranks: jax.Array, valid: jax.Array, ks: tuple[int, ...]) -> dict[str, jax.Array]:
    """Per-row metrics float32[B] for each name@K in METRICS x ks.

    ranks: int[B, M] from target_ranks; valid: bool[B, M], True at real (non-padding) targets.
    """
    valid = valid.astype(bool)
    r = ranks.astype(jnp.float32)
    n = jnp.sum(valid, axis=1).astype(jnp.float32)  # [B]
    any_target = n > 0
    gain = jnp.where(valid, 1.0 / jnp.log2(r + 2.0), 0.0)  # [B, M]
    best = jnp.min(jnp.where(valid, r, jnp.inf), axis=1)  # [B], inf when n = 0
    slots = jnp.arange(ranks.shape[1])  # ideal positions 0..M-1; min(n, K) <= M
    discount = 1.0 / jnp.log2(slots.astype(jnp.float32) + 2.0)  # [M]
    out = {}
    for k in ks:
        top = valid & (r < k)
        hits = jnp.sum(top, axis=1).astype(jnp.float32)
        idcg = jnp.sum(jnp.where(slots < jnp.minimum(n, k)[:, None], discount, 0.0), axis=1)
        out[f"hr@{k}"] = (hits > 0).astype(jnp.float32)
        out[f"recall@{k}"] = jnp.where(any_target, hits / jnp.maximum(n, 1.0), 0.0)
        out[f"capped_recall@{k}"] = jnp.where(
            any_target, hits / jnp.maximum(jnp.minimum(n, k), 1.0), 0.0
        )
        dcg = jnp.sum(jnp.where(top, gain, 0.0), axis=1)
        out[f"ndcg@{k}"] = jnp.where(any_target, dcg / jnp.where(any_target, idcg, 1.0), 0.0)
        out[f"mrr@{k}"] = jnp.where(best < k, 1.0 / (best + 1.0), 0.0)
        out[f"precision@{k}"] = hits / k
        out[f"f1@{k}"] = 2.0 * hits / (k + n)
    return out


def mask_scores(scores: jax.Array, exclude: jax.Array) -> jax.Array:
    """-inf at the excluded items (int32[B, S], 0 = none) and at padding item 0."""
    rows = jnp.arange(scores.shape[0])[:, None]
    scores = scores.at[rows, exclude].set(-jnp.inf)
    return scores.at[:, 0].set(-jnp.inf)
