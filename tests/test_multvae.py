"""Mult-VAE and Mult-DAE: the loss against NumPy's multinomial likelihood and Gaussian KL from the
same forward pass, the KL annealing, and scores at the latent mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stjax.config import base_config, tiny
from stjax.models import REGISTRY
from stjax.train.build import build_run


def _run(name):
    config = tiny(base_config(name))
    config.data.split = "held_out_users"
    config.eval.evaluators = ("fold_in",)
    config.model.dropout = 0.0
    config.model.anneal_steps = 100
    config.model.beta_cap = 0.3
    return config, build_run(config, log=lambda m: None)


def _numpy_loss(logits, mean, log_variance, bag, weights, num_items, beta):
    x = np.zeros((len(bag), num_items + 1))
    for row, items in enumerate(bag):
        x[row, items[items > 0]] = 1.0
    x = x[:, 1:]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    nll = -(log_softmax * x).sum(axis=1)
    kl = 0.5 * (np.exp(log_variance) + mean**2 - 1.0 - log_variance).sum(axis=1)
    users = weights.sum()
    return (nll * weights).sum() / users + beta * (kl * weights).sum() / users


@pytest.mark.parametrize("name, step", [("multvae", 30), ("multvae", 500), ("multdae", 30)])
def test_loss_is_the_multinomial_likelihood_plus_annealed_kl(name, step):
    config, run = _run(name)
    spec = REGISTRY[name]
    batch = {k: jnp.asarray(v) for k, v in run.iterator.batch(0, 0).items()}
    batch["weights"] = batch["weights"].at[2].set(0.0)
    variables = {"params": run.state.params}
    rng = jax.random.key(3)
    losses, aux = spec.losses(run.module, variables, batch, rng=rng, step=step, context={}, config=config.model)
    dropout_rng, latent_rng = jax.random.split(rng)
    logits, mean, log_variance = run.module.apply(variables, batch["bag"], deterministic=False,
                                                  rngs={"dropout": dropout_rng, "latent": latent_rng})
    beta = min(0.3, step / 100) if name == "multvae" else 0.0
    expected = _numpy_loss(np.asarray(logits, np.float64), np.asarray(mean, np.float64),
                           np.asarray(log_variance, np.float64), np.asarray(batch["bag"]),
                           np.asarray(batch["weights"], np.float64), run.info.num_items, beta)
    np.testing.assert_allclose(float(losses["model"]), expected, rtol=1e-5)
    if name == "multvae":
        np.testing.assert_allclose(float(aux["beta"]), beta, rtol=1e-6)
    else:
        assert "kl" not in aux


def test_scores_are_the_decoder_at_the_latent_mean():
    config, run = _run("multvae")
    batch = {k: jnp.asarray(v[:6]) for k, v in run.prepared.sequences.test.items()}
    variables = {"params": run.state.params}
    scores = np.asarray(REGISTRY["multvae"].score(run.module, variables, batch, context={}, scoring=None))
    mean = np.asarray(REGISTRY["multvae"].encode(run.module, variables, batch))
    decoded = np.asarray(run.module.apply(variables, jnp.asarray(mean), method=lambda m, z: m.decoder(z)))
    assert scores.shape == (6, run.info.item_rows)
    np.testing.assert_allclose(scores[:, 1:run.info.num_items + 1], decoded, rtol=1e-5, atol=1e-6)
    # Deterministic at evaluation: no latent sample is drawn.
    again = np.asarray(REGISTRY["multvae"].score(run.module, variables, batch, context={}, scoring=None))
    np.testing.assert_array_equal(scores, again)
