"""RecVAE: the composite prior against SciPy, alternating updates that touch only their own
group (the prior an exact copy of the encoder after each encoder phase), a pattern that updates
where it says, and a pattern that is refused."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.stats import norm

from stjax.config import ConfigError, load_config
from stjax.models.recvae import PRIOR_WEIGHTS, composite_log_prior, log_normal
from stjax.train.build import build_run
from stjax.train.state import every_k_steps, make_train_step

ROOT = Path(__file__).resolve().parents[1]


def test_composite_prior_equals_scipy():
    rng = np.random.default_rng(0)
    z, mean, log_variance = rng.normal(size=(3, 4, 5))
    got = np.asarray(composite_log_prior(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_variance)))
    density = (PRIOR_WEIGHTS[0] * norm.pdf(z) + PRIOR_WEIGHTS[1] * norm.pdf(z, mean, np.exp(0.5 * log_variance))
               + PRIOR_WEIGHTS[2] * norm.pdf(z, 0.0, np.exp(5.0)))
    np.testing.assert_allclose(got, np.log(density), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(log_normal(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(log_variance))),
                               norm.logpdf(z, mean, np.exp(0.5 * log_variance)), rtol=1e-5)


def test_a_pattern_updates_where_it_says():
    tx = every_k_steps(optax.sgd(1.0), 1, "1101")
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    moved = []
    for _ in range(8):
        update, state = tx.update({"w": jnp.ones(3)}, state, params)
        moved.append(bool(np.any(np.asarray(update["w"]) != 0)))
    assert moved == [True, True, False, True] * 2


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def test_alternating_updates_touch_only_their_own_group():
    config = load_config(str(ROOT / "experiments" / "recvae_ml100k.py") + ":tiny",
                         ["--config.train.warmup_steps=0"])  # tiny warms up: a first step at rate 0 moves nothing
    run = build_run(config, log=lambda m: None)
    step = make_train_step(run.spec, run.module, run.tx, run.config.model, 0, run.shardings)
    state = run.state
    history = [jax.device_get(state.params)]
    for index in range(8):
        batch = jax.device_put(run.iterator.batch(0, index % max(1, len(run.iterator.order(0)) // 16)),
                               run.shardings.batch)
        state, metrics = step(state, batch, run.context)
        assert np.isfinite(float(metrics["loss"]))
        history.append(jax.device_get(state.params))

    def same(before, after, group):
        return all(np.array_equal(a, b) for a, b in zip(leaves(before[group]), leaves(after[group])))

    for number in range(1, 9):  # step `number` is the pattern's place (number - 1) % 4
        before, after = history[number - 1], history[number]
        encoder_step = (number - 1) % 4 != 3
        assert same(before, after, "encoder") != encoder_step, number
        assert same(before, after, "decoder") == encoder_step, number
        assert same(before, after, "prior") == encoder_step, number
        if not encoder_step:  # the prior is now the encoder of the end of its phase, exactly
            for copy, original in zip(leaves(after["prior"]), leaves(after["encoder"])):
                np.testing.assert_allclose(copy, original, rtol=0, atol=1e-7)


def test_a_bad_pattern_is_refused():
    with pytest.raises(ConfigError, match="a cycle of 0 and 1"):
        load_config(str(ROOT / "experiments" / "recvae_ml100k.py") + ":tiny",
                    ["--config.train.groups.encoder.pattern=1120"])
