"""Self-attention for behaviour sequences: masks, transformer blocks, positions, TiSASRec.

Letters: B batch, T time (sequence), D model features, H heads, K = D / H per head.
Masks are boolean, True = attend. Padded query rows attend to nothing real; their outputs
are zeroed, so padding never reaches real positions.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
Array = jax.Array


def _p(init, names):
    return nn.with_logical_partitioning(init, names)


def attention_mask(padding: Array, causal: bool) -> Array:
    """padding: bool[B, T] (True = real) -> bool[B, 1, T, T] (query, key)."""
    mask = padding[:, None, None, :] & padding[:, None, :, None]
    if causal:
        time = padding.shape[1]
        mask = mask & jnp.tril(jnp.ones((time, time), dtype=bool))[None, None]
    return mask


def masked_softmax(scores: Array, mask: Array) -> Array:
    """Softmax over the last axis where mask is True; rows with no True give zeros."""
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1)
    return jnp.where(mask, weights, 0.0).astype(scores.dtype)


def sinusoidal_positions(length: int, features: int, max_scale: float = 10_000.0) -> np.ndarray:
    """The Transformer's fixed encodings: float32[length, features] (sin on even, cos on odd)."""
    position = np.arange(length)[:, None]
    rates = np.exp(-math.log(max_scale) * (np.arange(0, features, 2) / features))
    table = np.zeros((length, features), dtype=np.float32)
    table[:, 0::2] = np.sin(position * rates)
    table[:, 1::2] = np.cos(position * rates[: features // 2])
    return table


class PositionEmbedding(nn.Module):
    """Learned (default) or sinusoidal position encodings added to x: float[B, T, D]."""

    max_length: int
    kind: str = "learned"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        time, features = x.shape[-2:]
        if self.kind == "sinusoidal":
            return x + jnp.asarray(sinusoidal_positions(self.max_length, features)[:time], self.dtype)
        table = self.param("embedding", _p(nn.initializers.normal(0.02), ("length", "embed")),
                           (self.max_length, features), self.param_dtype)
        return x + table[:time].astype(self.dtype)


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention with H heads.

    __call__(x float[B, T, D], mask bool[B, 1, Q, T], queries float[B, Q, D] or None)
      -> (float[B, Q, D], weights float[B, H, Q, T] or None); queries default to x (Q = T).
    """

    num_heads: int
    dropout: float = 0.0
    return_weights: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool = True, queries: Array | None = None):
        features = x.shape[-1]
        if features % self.num_heads:
            raise ValueError(f"features {features} not divisible by num_heads {self.num_heads}")
        head = features // self.num_heads
        dense = lambda name: nn.DenseGeneral(  # noqa: E731
            (self.num_heads, head), dtype=self.dtype, param_dtype=self.param_dtype, name=name,
            kernel_init=_p(nn.initializers.xavier_uniform(), ("embed", "heads", "kv")),
            bias_init=_p(nn.initializers.zeros, ("heads", "kv")))
        query = dense("query")(x if queries is None else queries)  # [B, Q, H, K]
        key, value = dense("key")(x), dense("value")(x)  # [B, T, H, K]
        scores = jnp.einsum("bqhk,bthk->bhqt", query, key) / jnp.sqrt(head).astype(self.dtype)
        weights = masked_softmax(scores, mask)
        dropped = nn.Dropout(self.dropout)(weights, deterministic=deterministic)
        context = jnp.einsum("bhqt,bthk->bqhk", dropped, value)
        out = nn.DenseGeneral(features, axis=(-2, -1), dtype=self.dtype, param_dtype=self.param_dtype, name="out",
                              kernel_init=_p(nn.initializers.xavier_uniform(), ("heads", "kv", "embed")),
                              bias_init=_p(nn.initializers.zeros, ("embed",)))(context)
        return out, (weights if self.return_weights else None)


class FeedForward(nn.Module):
    hidden: int
    dropout: float = 0.0
    activation: str = "gelu"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, deterministic: bool = True) -> Array:
        features = x.shape[-1]
        h = nn.Dense(self.hidden, dtype=self.dtype, param_dtype=self.param_dtype, name="up",
                     kernel_init=_p(nn.initializers.xavier_uniform(), ("embed", "mlp")),
                     bias_init=_p(nn.initializers.zeros, ("mlp",)))(x)
        h = getattr(jax.nn, self.activation)(h)
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        return nn.Dense(features, dtype=self.dtype, param_dtype=self.param_dtype, name="down",
                        kernel_init=_p(nn.initializers.xavier_uniform(), ("mlp", "embed")),
                        bias_init=_p(nn.initializers.zeros, ("embed",)))(h)


class TransformerBlock(nn.Module):
    """Self-attention + feed-forward with residuals; pre-LN (default) or post-LN.

    pre-LN:  x + Attn(LN(x)), then x + FFN(LN(x))
    post-LN: LN(x + Attn(x)), then LN(x + FFN(x))
    __call__(x float[B, T, D], padding bool[B, T], last_only=False) -> (float[B, T, D], weights or None)
    last_only computes only the last position's query (float[B, 1, D]): what scoring needs
    from the final block, at a fraction of the cost.
    """

    num_heads: int
    mlp_hidden: int
    dropout: float = 0.0
    attention_dropout: float = 0.0
    causal: bool = True
    pre_norm: bool = True
    activation: str = "gelu"
    return_weights: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, padding: Array, deterministic: bool = True, last_only: bool = False):
        x = x.astype(self.dtype)
        mask = padding[:, None, None, :] if last_only else attention_mask(padding, self.causal)
        norm = lambda name: nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name=name,  # noqa: E731
                                         scale_init=_p(nn.initializers.ones, ("embed",)),
                                         bias_init=_p(nn.initializers.zeros, ("embed",)))
        attention = MultiHeadSelfAttention(self.num_heads, self.attention_dropout, self.return_weights,
                                           self.dtype, self.param_dtype, name="attention")
        ffn = FeedForward(self.mlp_hidden, self.dropout, self.activation, self.dtype, self.param_dtype, name="mlp")
        drop = nn.Dropout(self.dropout)
        keep = padding[..., None].astype(x.dtype)
        if last_only:
            keep = keep[:, -1:]
        if self.pre_norm:
            normed = norm("attention_norm")(x)
            attended, weights = attention(normed, mask, deterministic, normed[:, -1:] if last_only else None)
            x = (x[:, -1:] if last_only else x) + drop(attended, deterministic=deterministic)
            x = x + drop(ffn(norm("mlp_norm")(x), deterministic), deterministic=deterministic)
        else:
            attended, weights = attention(x, mask, deterministic, x[:, -1:] if last_only else None)
            x = norm("attention_norm")((x[:, -1:] if last_only else x) + drop(attended, deterministic=deterministic))
            x = norm("mlp_norm")(x + drop(ffn(x, deterministic), deterministic=deterministic))
        return x * keep, weights


def time_interval_matrix(timestamps: Array, padding: Array, max_interval: int) -> Array:
    """TiSASRec's personalised relation matrix: int32[B, T, T] in 0..max_interval.

    |t_i - t_j| is divided by the user's smallest non-zero interval between consecutive
    real events (1 when there is none), floored, and clipped at max_interval. Pairs that
    involve padding get 0.
    timestamps: int[B, T] (seconds); padding: bool[B, T].
    """
    t = timestamps.astype(jnp.float32)
    pair_valid = padding[:, :, None] & padding[:, None, :]
    consecutive = padding[:, 1:] & padding[:, :-1]
    gaps = jnp.abs(t[:, 1:] - t[:, :-1])
    positive = consecutive & (gaps > 0)
    big = jnp.finfo(jnp.float32).max
    scale = jnp.min(jnp.where(positive, gaps, big), axis=1)
    scale = jnp.where(scale == big, 1.0, scale)
    relation = jnp.floor(jnp.abs(t[:, :, None] - t[:, None, :]) / scale[:, None, None])
    relation = jnp.clip(relation, 0, max_interval).astype(jnp.int32)
    return jnp.where(pair_valid, relation, 0)


class TimeIntervalAttention(nn.Module):
    """TiSASRec self-attention (Li et al., WSDM 2020): relative time-interval embeddings and
    absolute position embeddings enter the keys and the values.

      score_ij = q_i · (k_j + r^K_ij + p^K_j) / sqrt(K)
      out_i    = Σ_j softmax_j(score_ij) (v_j + r^V_ij + p^V_j)

    r^K, r^V: embeddings of the clipped interval relation (`time_interval_matrix`);
    p^K, p^V: embeddings of the absolute position. Per head, each is split like q, k, v.
    __call__(x float[B, T, D], relation int32[B, T, T], mask bool[B, 1, T, T]) -> (float[B, T, D], weights)
    """

    num_heads: int
    max_interval: int
    max_length: int
    dropout: float = 0.0
    return_weights: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, relation: Array, mask: Array, deterministic: bool = True):
        batch, time, features = x.shape
        heads = self.num_heads
        head = features // heads
        dense = lambda name: nn.DenseGeneral(  # noqa: E731
            (heads, head), dtype=self.dtype, param_dtype=self.param_dtype, name=name,
            kernel_init=_p(nn.initializers.xavier_uniform(), ("embed", "heads", "kv")),
            bias_init=_p(nn.initializers.zeros, ("heads", "kv")))
        query, key, value = dense("query")(x), dense("key")(x), dense("value")(x)  # [B, T, H, K]
        table = lambda name, rows: self.param(  # noqa: E731
            name, _p(nn.initializers.normal(0.02), (None, "embed")), (rows, features), self.param_dtype
        ).astype(self.dtype).reshape(rows, heads, head)
        interval_key, interval_value = table("interval_key", self.max_interval + 1), table("interval_value", self.max_interval + 1)
        position_key, position_value = table("position_key", self.max_length), table("position_value", self.max_length)
        key = key + position_key[:time][None]
        value = value + position_value[:time][None]
        scale = jnp.sqrt(head).astype(self.dtype)
        # q_i · r^K_ij through the small relation vocabulary: [B, H, T, R] then a gather.
        query_relation = jnp.einsum("bqhk,rhk->bhqr", query, interval_key)
        relation_scores = jnp.take_along_axis(query_relation, relation[:, None, :, :], axis=-1)
        scores = (jnp.einsum("bqhk,bthk->bhqt", query, key) + relation_scores) / scale
        weights = masked_softmax(scores, mask)
        dropped = nn.Dropout(self.dropout)(weights, deterministic=deterministic)
        context = jnp.einsum("bhqt,bthk->bqhk", dropped, value)
        # Σ_j a_ij r^V_ij = Σ_r (Σ_{j: rel_ij = r} a_ij) r^V_r: a scatter-add of the weights
        # into [B, H, T, R] buckets, then a small matmul; no [B, T, T, D] array is formed.
        buckets = self.max_interval + 1
        rows = jnp.arange(batch * heads * time).reshape(batch, heads, time, 1)
        segment = rows * buckets + relation[:, None, :, :]  # [B, H, T, T]
        per_relation = jax.ops.segment_sum(dropped.reshape(-1), segment.reshape(-1),
                                           batch * heads * time * buckets).reshape(batch, heads, time, buckets)
        context = context + jnp.einsum("bhqr,rhk->bqhk", per_relation, interval_value)
        out = context.reshape(batch, time, features)
        return out, (weights if self.return_weights else None)


class TimeIntervalBlock(nn.Module):
    """TiSASRec block: pre-LN time-interval attention + feed-forward, causal by default.

    __call__(x float[B, T, D], timestamps int[B, T], padding bool[B, T]) -> (float[B, T, D], weights)
    """

    num_heads: int
    mlp_hidden: int
    max_interval: int
    max_length: int
    dropout: float = 0.0
    causal: bool = True
    return_weights: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, timestamps: Array, padding: Array, deterministic: bool = True):
        x = x.astype(self.dtype)
        relation = time_interval_matrix(timestamps, padding, self.max_interval)
        mask = attention_mask(padding, self.causal)
        norm = lambda name: nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name=name)  # noqa: E731
        attended, weights = TimeIntervalAttention(
            self.num_heads, self.max_interval, self.max_length, self.dropout, self.return_weights,
            self.dtype, self.param_dtype, name="attention")(norm("attention_norm")(x), relation, mask, deterministic)
        drop = nn.Dropout(self.dropout)
        x = x + drop(attended, deterministic=deterministic)
        x = x + drop(FeedForward(self.mlp_hidden, self.dropout, "relu", self.dtype, self.param_dtype, name="mlp")(
            norm("mlp_norm")(x), deterministic), deterministic=deterministic)
        return x * padding[..., None].astype(x.dtype), weights
