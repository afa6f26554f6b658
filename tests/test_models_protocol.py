"""Every registered model: init -> train steps (a tiny batch overfits) -> scores [B, I+1]; jit == eager."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stjax import models
from stjax.config import base_config, tiny
from stjax.train.loop import build_run
from stjax.train.state import make_train_step


@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_model_protocol(name):
    config = tiny(base_config(name))
    # A bias-only model moves at most ~lr per Adam step: its experiments use 5e-2 too.
    config.train.learning_rate = 5e-2 if name == "popularity" else 2e-2
    run = build_run(config, log=lambda m: None)
    step = make_train_step(run.spec, run.module, run.tx, config.model, 0, run.mesh)
    batch = {k: jnp.asarray(v) for k, v in run.iterator.batch(0, 0).items()}
    state = run.state
    losses = []
    for _ in range(30):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0] * 0.95, losses
    assert step._cache_size() == 1
    examples = run.prepared.sequences.test
    eval_batch = {k: jnp.asarray(v[:5]) for k, v in examples.items()}
    params = {"params": state.params}
    scores = run.spec.score(run.module, params, eval_batch)
    assert scores.shape == (5, run.prepared.sequences.num_items + 1)
    assert np.isneginf(np.asarray(scores[:, 0])).all()
    jitted = jax.jit(lambda p, b: run.spec.score(run.module, p, b))(params, eval_batch)
    np.testing.assert_allclose(np.asarray(jitted)[:, 1:], np.asarray(scores)[:, 1:], rtol=1e-4, atol=1e-4)


def test_same_seed_same_init_and_loss():
    config = tiny(base_config("sasrec"))
    a = build_run(config, log=lambda m: None)
    b = build_run(config, log=lambda m: None)
    for x, y in zip(jax.tree_util.tree_leaves(a.state.params), jax.tree_util.tree_leaves(b.state.params)):
        np.testing.assert_array_equal(x, y)


def test_sasrec_last_only_score_equals_full_forward():
    config = tiny(base_config("sasrec"))
    run = build_run(config, log=lambda m: None)
    batch = {k: jnp.asarray(v[:7]) for k, v in run.prepared.sequences.test.items()}
    params = {"params": run.state.params}
    hidden = run.module.apply(params, batch["items"], batch["timestamps"])[:, -1]
    full = run.module.apply(params, hidden, method="logits")
    np.testing.assert_allclose(np.asarray(run.spec.score(run.module, params, batch))[:, 1:],
                               np.asarray(full)[:, 1:], rtol=1e-4, atol=1e-4)
