"""Attention against NumPy references; causality by perturbation; TiSASRec terms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import meta
from jax.test_util import check_grads

from stjax.layers import (
    MultiHeadSelfAttention,
    PositionEmbedding,
    TimeIntervalAttention,
    TimeIntervalBlock,
    TransformerBlock,
    attention_mask,
    sinusoidal_positions,
    time_interval_matrix,
)

B, T, D, HEADS = 3, 5, 14, 2


def numpy_softmax(x, mask):
    x = np.where(mask, x, -np.inf)
    m = np.max(np.where(mask, x, -1e30), -1, keepdims=True)
    e = np.where(mask, np.exp(x - m), 0)
    s = e.sum(-1, keepdims=True)
    return np.where(s > 0, e / np.where(s > 0, s, 1), 0)


def numpy_attention(params, x, padding, causal):
    heads, k = params["query"]["kernel"].shape[1:]
    proj = {n: np.einsum("btd,dhk->bthk", x, params[n]["kernel"]) + params[n]["bias"] for n in ("query", "key", "value")}
    out = np.zeros((x.shape[0], x.shape[1], heads, k))
    weights = np.zeros((x.shape[0], heads, x.shape[1], x.shape[1]))
    for b in range(x.shape[0]):
        for h in range(heads):
            for i in range(x.shape[1]):
                allowed = np.array([padding[b, i] and padding[b, j] and (not causal or j <= i) for j in range(x.shape[1])])
                scores = np.array([proj["query"][b, i, h] @ proj["key"][b, j, h] / np.sqrt(k) for j in range(x.shape[1])])
                w = numpy_softmax(scores, allowed)
                weights[b, h, i] = w
                out[b, i, h] = w @ proj["value"][b, :, h]
    final = np.einsum("bthk,hkd->btd", out, params["out"]["kernel"]) + params["out"]["bias"]
    return final, weights


@pytest.mark.parametrize("causal", [True, False])
def test_multihead_attention_equals_numpy(causal):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    padding = np.ones((B, T), bool)
    padding[1, :2] = False
    layer = MultiHeadSelfAttention(HEADS, return_weights=True)
    mask = attention_mask(jnp.asarray(padding), causal)
    params = meta.unbox(layer.init(jax.random.key(0), x, mask))["params"]
    out, weights = layer.apply({"params": params}, x, mask)
    ref_out, ref_weights = numpy_attention(jax.tree_util.tree_map(np.asarray, params), x, padding, causal)
    np.testing.assert_allclose(weights, ref_weights, atol=1e-5)
    real = padding[..., None]
    np.testing.assert_allclose(np.where(real, out, 0), np.where(real, ref_out, 0), atol=1e-4)


@pytest.mark.parametrize("pre_norm", [True, False])
def test_causal_block_perturbation(pre_norm):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    padding = np.ones((B, T), bool)
    block = TransformerBlock(HEADS, 2 * D, causal=True, pre_norm=pre_norm)
    params = block.init(jax.random.key(0), x, padding)
    base, _ = block.apply(params, x, padding)
    for t in range(T - 1):
        changed = x.copy()
        changed[:, t + 1:] += rng.normal(size=changed[:, t + 1:].shape)
        out, _ = block.apply(params, changed, padding)
        np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-5)
        assert np.abs(np.asarray(out[:, t + 1:]) - np.asarray(base[:, t + 1:])).max() > 1e-3


def test_bidirectional_block_sees_the_future():
    x = np.random.default_rng(2).normal(size=(1, T, D)).astype(np.float32)
    padding = np.ones((1, T), bool)
    block = TransformerBlock(HEADS, 2 * D, causal=False)
    params = block.init(jax.random.key(0), x, padding)
    changed = x.copy()
    changed[:, -1] += np.random.default_rng(9).normal(size=D)
    assert np.abs(np.asarray(block.apply(params, changed, padding)[0][:, 0] - block.apply(params, x, padding)[0][:, 0])).max() > 1e-4


def test_padding_never_changes_real_outputs():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    padding = np.ones((B, T), bool)
    padding[:, :2] = False
    block = TransformerBlock(HEADS, 2 * D, causal=True)
    params = block.init(jax.random.key(0), x, padding)
    base, _ = block.apply(params, x, padding)
    noisy = x.copy()
    noisy[:, :2] = rng.normal(size=(B, 2, D)) * 100
    out, _ = block.apply(params, noisy, padding)
    np.testing.assert_allclose(out, base, atol=1e-5)
    np.testing.assert_array_equal(out[:, :2], 0.0)
    short, _ = block.apply(params, x[:, 2:], np.ones((B, 3), bool))
    np.testing.assert_allclose(base[:, 2:], short, atol=1e-5)


def test_positions():
    table = sinusoidal_positions(7, 6)
    assert table[3, 0] == pytest.approx(np.sin(3.0)) and table[3, 1] == pytest.approx(np.cos(3.0))
    assert table[5, 4] == pytest.approx(np.sin(5 / 10_000 ** (4 / 6)), rel=1e-5)
    x = np.zeros((1, 4, 6), np.float32)
    learned = PositionEmbedding(7)
    params = learned.init(jax.random.key(0), x)
    np.testing.assert_allclose(learned.apply(params, x)[0], meta.unbox(params)["params"]["embedding"][:4])
    np.testing.assert_allclose(PositionEmbedding(7, "sinusoidal").apply({}, x)[0], table[:4], atol=1e-6)


def numpy_relation(times, padding, k):
    out = np.zeros((times.shape[0], times.shape[1], times.shape[1]), np.int64)
    for b in range(times.shape[0]):
        real = [t for t, p in zip(times[b], padding[b]) if p]
        gaps = [abs(real[i + 1] - real[i]) for i in range(len(real) - 1) if real[i + 1] != real[i]]
        scale = min(gaps) if gaps else 1
        for i in range(times.shape[1]):
            for j in range(times.shape[1]):
                if padding[b, i] and padding[b, j]:
                    out[b, i, j] = min(k, int(np.floor(abs(times[b, i] - times[b, j]) / scale)))
    return out


def test_time_interval_matrix_equals_numpy():
    rng = np.random.default_rng(4)
    times = np.sort(rng.integers(0, 10_000, (B, T)), axis=1).astype(np.int32)
    times[0, 1] = times[0, 0]  # a zero gap is not the scale
    padding = np.ones((B, T), bool)
    padding[2, :3] = False
    np.testing.assert_array_equal(time_interval_matrix(times, padding, 9), numpy_relation(times, padding, 9))


def test_time_interval_attention_equals_numpy():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    times = np.sort(rng.integers(0, 1000, (B, T)), axis=1).astype(np.int32)
    padding = np.ones((B, T), bool)
    padding[1, :1] = False
    relation = np.asarray(time_interval_matrix(times, padding, 6))
    mask = attention_mask(jnp.asarray(padding), True)
    layer = TimeIntervalAttention(HEADS, max_interval=6, max_length=T, return_weights=True)
    params = jax.tree_util.tree_map(np.asarray, meta.unbox(layer.init(jax.random.key(1), x, relation, mask))["params"])
    out, weights = layer.apply({"params": params}, x, relation, mask)
    k = D // HEADS
    q, kk, v = (np.einsum("btd,dhk->bthk", x, params[n]["kernel"]) + params[n]["bias"] for n in ("query", "key", "value"))
    rk, rv = params["interval_key"].reshape(-1, HEADS, k), params["interval_value"].reshape(-1, HEADS, k)
    pk, pv = params["position_key"].reshape(-1, HEADS, k), params["position_value"].reshape(-1, HEADS, k)
    expected = np.zeros((B, T, HEADS, k))
    for b in range(B):
        for h in range(HEADS):
            for i in range(T):
                allowed = np.array([padding[b, i] and padding[b, j] and j <= i for j in range(T)])
                scores = np.array([q[b, i, h] @ (kk[b, j, h] + rk[relation[b, i, j], h] + pk[j, h]) / np.sqrt(k)
                                   for j in range(T)])
                w = numpy_softmax(scores, allowed)
                np.testing.assert_allclose(weights[b, h, i], w, atol=1e-5)
                expected[b, i, h] = sum(w[j] * (v[b, j, h] + rv[relation[b, i, j], h] + pv[j, h]) for j in range(T))
    np.testing.assert_allclose(out, expected.reshape(B, T, D), atol=1e-4)


def test_tisas_block_jit_and_grads():
    rng = np.random.default_rng(6)
    block = TimeIntervalBlock(HEADS, 2 * D, max_interval=8, max_length=T)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    times = np.sort(rng.integers(0, 500, (B, T)), 1).astype(np.int32)
    padding = np.ones((B, T), bool)
    params = block.init(jax.random.key(0), x, times, padding)
    eager = block.apply(params, x, times, padding)[0]
    jitted = jax.jit(lambda p, x: block.apply(p, x, times, padding)[0])(params, x)
    np.testing.assert_allclose(eager, jitted, atol=1e-5)
    with jax.enable_x64(True):
        block64 = TimeIntervalBlock(1, 6, max_interval=4, max_length=4, dtype=jnp.float64, param_dtype=jnp.float64)
        x64 = jnp.asarray(rng.normal(size=(2, 4, 6)))
        t64 = jnp.asarray([[0, 5, 9, 30], [1, 2, 3, 4]])
        pad = jnp.ones((2, 4), bool)
        p64 = meta.unbox(block64.init(jax.random.key(0), x64, t64, pad))
        check_grads(lambda p, x: block64.apply(p, x, t64, pad)[0].sum(), (p64, x64), order=1, modes=["rev"],
                    atol=1e-4, rtol=1e-4)


def test_transformer_block_grads():
    with jax.enable_x64(True):
        block = TransformerBlock(2, 8, causal=True, dtype=jnp.float64, param_dtype=jnp.float64)
        x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 3, 6)))
        pad = jnp.asarray([[True, True, True], [False, True, True]])
        params = meta.unbox(block.init(jax.random.key(0), x, pad))
        check_grads(lambda p, x: block.apply(p, x, pad)[0].sum(), (params, x), order=1, modes=["rev"],
                    atol=1e-4, rtol=1e-4)


def test_bfloat16_compute_option():
    x = np.random.default_rng(8).normal(size=(B, T, D)).astype(np.float32)
    padding = np.ones((B, T), bool)
    block = TransformerBlock(HEADS, 2 * D, dtype=jnp.bfloat16)
    params = block.init(jax.random.key(0), x, padding)
    out, _ = block.apply(params, x, padding)
    assert out.dtype == jnp.bfloat16
    assert jax.tree_util.tree_leaves(meta.unbox(params))[0].dtype == jnp.float32


@pytest.mark.parametrize("pre_norm", [True, False])
def test_last_only_equals_last_position_of_full_block(pre_norm):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    padding = np.ones((B, T), bool)
    padding[0, :3] = False
    block = TransformerBlock(HEADS, 2 * D, causal=True, pre_norm=pre_norm)
    params = block.init(jax.random.key(0), x, padding)
    full, _ = block.apply(params, x, padding)
    last, _ = block.apply(params, x, padding, last_only=True)
    assert last.shape == (B, 1, D)
    np.testing.assert_allclose(last[:, 0], full[:, -1], atol=1e-5)
