"""Every registered model through the one interface: init -> train steps (a tiny batch overfits)
-> scores [B, W >= I+1] -> jit == eager -> user vectors; same seed, same first losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stjax import models
from stjax.compiles import CompileCounter
from stjax.config import base_config, tiny
from stjax.models.shared import mask_non_items
from stjax.train.loop import build_run
from stjax.train.state import make_train_step


def _run(name, **train):
    config = tiny(base_config(name))
    with config.unlocked():
        for key, value in train.items():
            config.train[key] = value
    return config, build_run(config, log=lambda m: None)


@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_model_protocol(name):
    # A bias-only model moves at most ~lr per Adam step: its experiments use 5e-2 too.
    config, run = _run(name, learning_rate=5e-2 if name == "popularity" else 2e-2)
    compiles = CompileCounter()
    step = make_train_step(run.spec, run.module, run.tx, config.model, 0, run.shardings)
    batch = jax.device_put(run.iterator.batch(0, 0), run.shardings.batch)
    state = run.state
    initial = jax.tree_util.tree_map(np.asarray, jax.device_get(state.params))  # the step donates the state
    losses = []
    for _ in range(30):
        state, metrics = step(state, batch, run.context)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all()
    if run.spec.trainable:
        assert losses[-1] < losses[0] * 0.95, losses
    else:  # a closed form (EASE): nothing to learn, the steps leave the parameters as they were
        for before, after in zip(jax.tree_util.tree_leaves(initial), jax.tree_util.tree_leaves(state.params)):
            np.testing.assert_array_equal(before, np.asarray(after))
    # Other batches (other users, lengths, targets) and the state a step returns reuse the one
    # compiled step: fixed shapes, and the state keeps its structure and shardings.
    for index in (1, run.iterator.steps_per_epoch - 1):
        state, _ = step(state, jax.device_put(run.iterator.batch(0, index), run.shardings.batch), run.context)
    assert compiles.count(step) == 1
    examples = run.prepared.sequences.test
    eval_batch = {k: jnp.asarray(v[:5]) for k, v in examples.items()}
    variables = {"params": state.params}
    scoring = run.spec.prepare_scoring(run.module, variables, context=run.context)
    if run.spec.score is None:  # a model that predicts values (a forecaster, time to the next event)
        _check_predictions(run, variables, eval_batch, scoring)
        return
    scores = run.spec.score(run.module, variables, eval_batch, context=run.context, scoring=scoring)
    assert scores.shape[0] == 5 and scores.shape[1] >= run.info.num_items + 1
    masked = np.asarray(mask_non_items(scores, run.info.num_items))
    assert np.isneginf(masked[:, 0]).all() and np.isfinite(masked[:, 1:run.info.num_items + 1]).all()
    jitted = jax.jit(lambda p, b: run.spec.score(run.module, p, b, context=run.context, scoring=scoring))(
        variables, eval_batch)
    np.testing.assert_allclose(np.asarray(jitted)[:, 1:], np.asarray(scores)[:, 1:], rtol=1e-4, atol=1e-4)
    if run.spec.encode is not None:
        vectors = run.spec.encode(run.module, variables, eval_batch, context=run.context, scoring=scoring)
        assert vectors.shape[0] == 5 and vectors.ndim == 2 and np.isfinite(np.asarray(vectors)).all()


def _check_predictions(run, variables, eval_batch, scoring):
    """predict: finite values, one row per example, jit == eager; and `encode` when the model has it."""
    predicted = run.spec.predict(run.module, variables, eval_batch, context=run.context, scoring=scoring)
    assert predicted.shape[0] == 5 and np.isfinite(np.asarray(predicted)).all()
    jitted = jax.jit(lambda p, b: run.spec.predict(run.module, p, b, context=run.context, scoring=scoring))(
        variables, eval_batch)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(predicted), rtol=1e-4, atol=1e-4)
    if run.spec.encode is not None:
        vectors = run.spec.encode(run.module, variables, eval_batch, context=run.context, scoring=scoring)
        assert vectors.shape[0] == 5 and vectors.ndim == 2 and np.isfinite(np.asarray(vectors)).all()


def test_same_seed_same_init_and_first_losses():
    runs = [_run("sasrec")[1] for _ in range(2)]
    for x, y in zip(jax.tree_util.tree_leaves(runs[0].state.params), jax.tree_util.tree_leaves(runs[1].state.params)):
        np.testing.assert_array_equal(x, y)
    trajectories = []
    for run in runs:
        step = make_train_step(run.spec, run.module, run.tx, run.config.model, int(run.config.seed), run.shardings)
        state, losses = run.state, []
        for index in range(3):
            state, metrics = step(state, jax.device_put(run.iterator.batch(0, index), run.shardings.batch), run.context)
            losses.append(float(metrics["loss"]))
        trajectories.append(losses)
    assert trajectories[0] == trajectories[1]
    assert len(set(trajectories[0])) == 3  # the steps really train (dropout and data differ per step)


def test_sasrec_last_only_score_equals_full_forward():
    _, run = _run("sasrec")
    batch = {k: jnp.asarray(v[:7]) for k, v in run.prepared.sequences.test.items()}
    variables = {"params": run.state.params}
    hidden = run.module.apply(variables, batch["items"], batch["timestamps"])[:, -1]
    full = run.module.apply(variables, hidden, method="logits")
    np.testing.assert_allclose(np.asarray(run.spec.score(run.module, variables, batch))[:, 1:],
                               np.asarray(full)[:, 1:], rtol=1e-4, atol=1e-4)


def test_a_model_file_registers_itself():
    """Every file of stjax/models/ that defines SPEC is registered under its name (no second file)."""
    import importlib
    import pkgutil

    files = [m.name for m in pkgutil.iter_modules(models.__path__)  # base and the shared_* pieces hold no model
             if m.name != "base" and not m.name.startswith("shared")]
    assert len(files) >= 6
    for name in files:
        spec = importlib.import_module(f"stjax.models.{name}").SPEC
        assert models.REGISTRY[spec.name] is spec
