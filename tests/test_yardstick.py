"""The benchmark yardsticks compare equal work: the plain-Flax SASRec (scripts/yardstick_sasrec.py)
gives stjax's loss and gradients on stjax's weights, and the RecBole runner refuses to time with
PyTorch's autograd anomaly detection on (checked against a stand-in torch, so no torch is needed)."""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax.linen import meta

from stjax.models.sasrec import SASRec
from stjax.models.shared import sequence_losses

SCRIPTS = Path(__file__).parent.parent / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"stjax_scripts_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Flax modules are dataclasses: their module must be importable by name
    spec.loader.exec_module(module)
    return module


def _batch(num_items, batch=3, time=5, seed=0):
    """Left-padded histories of odd lengths (one row fully real, one mostly padding), next-item
    targets, and a zero-weight row."""
    rng = np.random.default_rng(seed)
    items = rng.integers(1, num_items + 1, size=(batch, time + 1)).astype(np.int32)
    lengths = [time + 1, 3, 2][:batch]
    for row, length in enumerate(lengths):
        items[row, : time + 1 - length] = 0
    return {"items": jnp.asarray(items[:, :-1]), "targets": jnp.asarray(items[:, 1:]),
            "timestamps": jnp.zeros((batch, time), jnp.int32), "weights": jnp.asarray([1.0, 1.0, 0.0][:batch])}


@pytest.mark.parametrize("item_rows", [12, 16])  # 16: the table padded above I = 11, as for a model-sharded run
def test_yardstick_computes_stjax_loss_and_gradients(item_rows):
    yardstick = _load("yardstick_sasrec")
    num_items, time, hidden, mlp_ratio = 11, 5, 8, 3
    stjax_model = SASRec(num_items=num_items, max_length=time, item_rows=item_rows, hidden=hidden, num_blocks=2,
                         num_heads=2, mlp_ratio=mlp_ratio, dropout=0.0, attention_dropout=0.0)
    batch = _batch(num_items, time=time)
    params = meta.unbox(stjax_model.init(jax.random.key(1), batch["items"], batch["timestamps"]))["params"]
    # Non-zero biases and norms, so a misplaced bias or LayerNorm shows in the loss.
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree_util.tree_unflatten(
        treedef, [leaf + 0.1 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves, keys)])

    def stjax_loss(p):
        losses, aux = sequence_losses(stjax_model, {"params": p}, batch, rng=jax.random.key(0), step=0, context=None,
                                      config=ml_collections.ConfigDict({"loss": "ce"}))
        return losses["model"]

    plain = yardstick.SASRec(num_items=num_items, max_length=time, hidden=hidden, inner=hidden * mlp_ratio,
                             num_blocks=2, num_heads=2, dropout=0.0, attention_dropout=0.0, pre_norm=True)
    mapped = yardstick.from_stjax_params(params, num_items)
    plain_loss = lambda p: yardstick.loss_fn(plain, p, batch, deterministic=True)  # noqa: E731
    expected, expected_grads = jax.value_and_grad(stjax_loss)(params)
    found, found_grads = jax.value_and_grad(plain_loss)(mapped)
    assert np.isfinite(float(expected)) and float(expected) > 0
    np.testing.assert_allclose(float(found), float(expected), rtol=1e-5)
    mapped_grads = yardstick.from_stjax_params(expected_grads, num_items)
    for (path, want), got in zip(jax.tree_util.tree_flatten_with_path(mapped_grads)[0],
                                 jax.tree_util.tree_leaves(found_grads)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))
    # The yardstick's own init has the same tree, so its train step runs on mapped weights.
    own = plain.init(jax.random.key(3), batch["items"])["params"]
    assert jax.tree_util.tree_structure(own) == jax.tree_util.tree_structure(mapped)
    assert all(a.shape == b.shape for a, b in zip(jax.tree_util.tree_leaves(own), jax.tree_util.tree_leaves(mapped)))


def test_post_norm_yardstick_differs_and_trains():
    yardstick = _load("yardstick_sasrec")
    batch = _batch(11)
    model = yardstick.SASRec(num_items=11, max_length=5, hidden=8, inner=24, pre_norm=False)
    params = model.init(jax.random.key(0), batch["items"])["params"]
    assert "final_norm" not in params
    init_fn, step = yardstick.make_train_step(model, learning_rate=1e-2)
    opt_state = init_fn(params)
    losses = []
    for index in range(8):
        params, opt_state, loss = step(params, opt_state, batch, jax.random.key(index))
        losses.append(float(loss))
    assert losses[-1] < losses[0]


class _FakeAutograd:
    def __init__(self, torch, sticky):
        self.torch, self.sticky = torch, sticky

    def set_detect_anomaly(self, mode):
        if not self.sticky:
            self.torch.anomaly = bool(mode)


class _FakeTorch:
    """The two calls the runner makes: torch.autograd.set_detect_anomaly and torch.is_anomaly_enabled.
    `sticky` models a torch on which switching it off does not take."""

    def __init__(self, anomaly, sticky=False):
        self.anomaly = anomaly
        self.autograd = _FakeAutograd(self, sticky)

    def is_anomaly_enabled(self):
        return self.anomaly


def test_recbole_runner_switches_anomaly_detection_off_and_asserts_it():
    runner = _load("recbole_sasrec")
    assert "torch" not in runner.__dict__  # importing the runner needs no torch
    torch = _FakeTorch(anomaly=True)  # as after `import recbole.model.sequential_recommender` (sine.py)
    assert runner.anomaly_detection_off(torch) is True  # reports that it had been on
    assert torch.anomaly is False
    assert runner.anomaly_detection_off(_FakeTorch(anomaly=False)) is False
    with pytest.raises(AssertionError, match="anomaly"):
        runner.anomaly_detection_off(_FakeTorch(anomaly=True, sticky=True))


def test_recbole_timing_refuses_to_run_with_anomaly_detection_on():
    runner = _load("recbole_sasrec")
    calls = []
    step = lambda batch: calls.append(batch)  # noqa: E731
    with pytest.raises(AssertionError, match="anomaly"):
        runner.time_steps(_FakeTorch(anomaly=True), step, iter(range(100)), warmup=1, repeats=2, steps=3)
    assert calls == []  # nothing was timed
    times = runner.time_steps(_FakeTorch(anomaly=False), step, iter(range(100)), warmup=1, repeats=2, steps=3)
    assert len(times) == 2 and len(calls) == 1 + 2 * 3


def test_scripts_import_no_stjax():
    text = (SCRIPTS / "yardstick_sasrec.py").read_text()
    assert "stjax" not in "".join(line for line in text.splitlines() if line.startswith(("import", "from")))
