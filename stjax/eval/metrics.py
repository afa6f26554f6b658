"""Ranking metrics from the rank of the single held-out target, as RecBole defines them.

rank r (0-based) of the target among the candidates, ties broken by item id (an item with
the same score and a smaller id ranks ahead). With hit@K = [r < K]:

  HR@K = hit@K                    Recall@K = hit@K  (one relevant item)
  NDCG@K = hit@K / log2(r + 2)    MRR@K = hit@K / (r + 1)
  Precision@K = hit@K / K         F1@K = 2 P R / (P + R) = 2 hit@K / (K + 1)

Metrics are averaged over evaluation targets (one per user under leave-one-out).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

METRICS = ("hr", "ndcg", "mrr", "recall", "precision", "f1")


def target_rank(scores: jax.Array, targets: jax.Array) -> jax.Array:
    """0-based rank of each target. scores: float[B, I+1] (masked entries -inf); targets: int32[B]."""
    target_score = jnp.take_along_axis(scores, targets[:, None], axis=1)
    items = jnp.arange(scores.shape[1])[None, :]
    ahead = (scores > target_score) | ((scores == target_score) & (items < targets[:, None]))
    return jnp.sum(ahead, axis=1).astype(jnp.int32)


def rank_metrics(ranks: jax.Array, ks: tuple[int, ...]) -> dict[str, jax.Array]:
    """Per-row metrics float[B] for each name@K."""
    ranks = ranks.astype(jnp.float32)
    out = {}
    for k in ks:
        hit = (ranks < k).astype(jnp.float32)
        out[f"hr@{k}"] = hit
        out[f"recall@{k}"] = hit
        out[f"ndcg@{k}"] = hit / jnp.log2(ranks + 2.0)
        out[f"mrr@{k}"] = hit / (ranks + 1.0)
        out[f"precision@{k}"] = hit / k
        out[f"f1@{k}"] = 2.0 * hit / (k + 1.0)
    return out


def mask_scores(scores: jax.Array, exclude: jax.Array) -> jax.Array:
    """-inf at the excluded items (int32[B, S], 0 = none) and at padding item 0."""
    rows = jnp.arange(scores.shape[0])[:, None]
    scores = scores.at[rows, exclude].set(-jnp.inf)
    return scores.at[:, 0].set(-jnp.inf)
