"""LSTM/GRU against a NumPy loop of the textbook equations; padding, scan vs unroll, grads."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import meta
from jax.test_util import check_grads

from stjax.layers import RNN, RecurrentLayer

B, T, F, H = 3, 5, 7, 13


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_reference(cell, params, x, mask, forget_bias=0.0, reverse=False):
    W = np.asarray(params["input_projection"]["kernel"], np.float64)
    b = np.asarray(params["input_projection"]["bias"], np.float64)
    U = np.asarray(params["step"]["recurrent_kernel"], np.float64)
    outputs = np.zeros((x.shape[0], x.shape[1], H))
    finals = []
    for row in range(x.shape[0]):
        h = np.zeros(H)
        c = np.zeros(H)
        steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
        for t in steps:
            if not mask[row, t]:
                continue
            xw = x[row, t] @ W + b
            if cell == "lstm":
                i, f, g, o = np.split(xw + h @ U, 4)
                c = sigmoid(f + forget_bias) * c + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(c)
            else:
                bh = np.asarray(params["step"]["recurrent_bias"], np.float64)
                xr, xz, xn = np.split(xw, 3)
                hr, hz, hn = np.split(h @ U, 3)
                r, z = sigmoid(xr + hr), sigmoid(xz + hz)
                n = np.tanh(xn + r * (hn + bh))
                h = (1 - z) * n + z * h
            outputs[row, t] = h
        finals.append((h, c))
    return outputs, finals


def setup(cell, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, F)).astype(np.float32)
    mask = np.ones((B, T), bool)
    mask[1, :2] = False  # left padding
    mask[2, 4:] = False  # right padding
    layer = RecurrentLayer(cell=cell, hidden=H, **kwargs)
    params = meta.unbox(layer.init(jax.random.key(seed), x, mask))["params"]
    return layer, params, x, mask


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_equals_numpy_loop(cell, reverse):
    layer, params, x, mask = setup(cell, forget_bias=1.0 if cell == "lstm" else 0.0, reverse=reverse)
    outputs, carry = layer.apply({"params": params}, x, mask)
    expected, finals = numpy_reference(cell, params, x, mask, 1.0 if cell == "lstm" else 0.0, reverse)
    assert np.abs(np.asarray(outputs) - expected).max() <= 1e-5
    np.testing.assert_allclose(carry[0], np.stack([f[0] for f in finals]), atol=1e-5)
    if cell == "lstm":
        np.testing.assert_allclose(carry[1], np.stack([f[1] for f in finals]), atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padding_does_not_change_real_steps(cell):
    layer, params, x, _ = setup(cell)
    unpadded, carry = layer.apply({"params": params}, x[:, :3], np.ones((B, 3), bool))
    padded_x = np.concatenate([np.random.default_rng(1).normal(size=(B, 2, F)).astype(np.float32), x[:, :3]], 1)
    mask = np.concatenate([np.zeros((B, 2), bool), np.ones((B, 3), bool)], 1)
    padded, padded_carry = layer.apply({"params": params}, padded_x, mask)
    np.testing.assert_allclose(padded[:, 2:], unpadded, atol=1e-6)
    np.testing.assert_array_equal(padded[:, :2], 0.0)
    np.testing.assert_allclose(padded_carry[0], carry[0], atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_scan_equals_unrolled(cell):
    layer, params, x, mask = setup(cell)
    unrolled = RecurrentLayer(cell=cell, hidden=H, scan=False)
    assert jax.tree_util.tree_structure(meta.unbox(unrolled.init(jax.random.key(0), x, mask))["params"]) == \
        jax.tree_util.tree_structure(params)
    a, _ = layer.apply({"params": params}, x, mask)
    b, _ = unrolled.apply({"params": params}, x, mask)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_bidirectional_stacked_shapes_and_backward_half():
    model = RNN(cell="gru", hidden=H, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(B, T, F)).astype(np.float32)
    mask = np.ones((B, T), bool)
    mask[0, :3] = False
    params = meta.unbox(model.init(jax.random.key(0), x, mask))["params"]
    out, finals = model.apply({"params": params}, x, mask)
    assert out.shape == (B, T, 2 * H) and len(finals) == 2
    # The first layer's backward half equals a reverse layer with the same weights.
    backward = RecurrentLayer(cell="gru", hidden=H, reverse=True)
    single, _ = RNN(cell="gru", hidden=H, bidirectional=True).apply(
        {"params": {"layer_0_forward": params["layer_0_forward"], "layer_0_backward": params["layer_0_backward"]}}, x, mask)
    ref, _ = backward.apply({"params": params["layer_0_backward"]}, x, mask)
    np.testing.assert_allclose(single[..., H:], ref, atol=1e-6)


def test_jit_equals_eager_and_traces_once():
    layer, params, x, mask = setup("lstm")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def forward(params, x, mask):
        return layer.apply({"params": params}, x, mask)[0]

    eager = layer.apply({"params": params}, x, mask)[0]
    np.testing.assert_allclose(forward(params, x, mask), eager, atol=1e-6)
    forward(params, x + 1, mask)  # same shapes: no new trace
    chex.clear_trace_counter()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients(cell):
    with jax.enable_x64(True):
        layer = RecurrentLayer(cell=cell, hidden=3, dtype=jnp.float64, param_dtype=jnp.float64)
        x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 5)))
        mask = jnp.asarray([[True] * 4, [False, True, True, True]])
        params = meta.unbox(layer.init(jax.random.key(0), x, mask))["params"]
        check_grads(lambda p, x: layer.apply({"params": p}, x, mask)[0].sum(), (params, x), order=1,
                    modes=["rev"], atol=1e-4, rtol=1e-4)


def test_vmap_equals_loop():
    layer, params, x, mask = setup("gru")
    single = lambda xs, ms: layer.apply({"params": params}, xs[None], ms[None])[0][0]  # noqa: E731
    batched = jax.vmap(single)(x, mask)
    looped = np.stack([single(x[i], mask[i]) for i in range(B)])
    np.testing.assert_allclose(batched, looped, atol=1e-6)
