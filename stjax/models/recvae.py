"""RecVAE (Shenbin et al., WSDM 2020): Mult-VAE with a deeper encoder, a composite prior and
alternating updates of the encoder and the decoder, as three parameter groups.

  encoder  x (L2-normalised multi-hot, input dropout) -> 5 dense layers of `hidden` units,
           h_i = LayerNorm(swish(W_i h_{i-1} + sum_{j<i} h_j)) -> (mean, log_variance)
  decoder  z -> item logits (one linear layer)
  prior    a copy of the encoder from the end of its last phase, q_old(z|x)

The loss of the encoder group is the bag's negative multinomial log-likelihood plus
beta(x) KL(q(z|x) || p(z|x)), with beta(x) = gamma |x| (the user's number of items) and the
composite prior p(z|x) = 3/20 N(0, I) + 3/4 q_old(z|x) + 1/10 N(0, e^10 I), per latent dimension,
the KL estimated by one sample. The decoder group's loss is the log-likelihood alone with the
encoder run without dropout, and the prior group's, 1/2 |prior - stop_gradient(encoder)|^2 with
SGD at learning rate 1: a step copies the encoder. `experiments/recvae_ml1m.py` alternates them
step by step, encoder "1110", decoder and prior "0001" (the paper alternates 3 encoder epochs with
1 decoder epoch and copies the prior after each encoder phase; here the phases are batches).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stjax.layers.generative import multinomial_log_likelihood, reparameterize
from stjax.models.base import ModelSpec, config_keys, integer, number
from stjax.models.multvae import multi_hot

PRIOR_WEIGHTS = (3 / 20, 3 / 4, 1 / 10)
WIDE_LOG_VARIANCE = 10.0


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name="recvae", hidden=600, latent=200, layers=5, dropout=0.5, gamma=0.005))


class RecVAEEncoder(nn.Module):
    hidden: int
    latent: int
    layers: int = 5
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        """x float[B, I] -> (mean, log_variance) float[B, latent]."""
        x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
        previous, total = x, 0.0
        for index in range(self.layers):
            h = nn.LayerNorm(epsilon=0.1, name=f"norm_{index}")(
                nn.swish(nn.Dense(self.hidden, name=f"dense_{index}")(previous) + total))
            total = total + h
            previous = h
        return nn.Dense(self.latent, name="mean")(previous), nn.Dense(self.latent, name="log_variance")(previous)


def log_normal(z, mean, log_variance):
    """log N(z; mean, diag exp(log_variance)) per dimension: float[B, D]."""
    return -0.5 * (log_variance + jnp.log(2 * jnp.pi) + (z - mean) ** 2 / jnp.exp(log_variance))


def composite_log_prior(z, old_mean, old_log_variance):
    """log p(z|x) per dimension of the composite prior (see the module docstring): float[B, D]."""
    zeros = jnp.zeros_like(z)
    parts = jnp.stack([log_normal(z, zeros, zeros) + np.log(PRIOR_WEIGHTS[0]),
                       log_normal(z, old_mean, old_log_variance) + np.log(PRIOR_WEIGHTS[1]),
                       log_normal(z, zeros, zeros + WIDE_LOG_VARIANCE) + np.log(PRIOR_WEIGHTS[2])], axis=-1)
    return jax.nn.logsumexp(parts, axis=-1)


class RecVAE(nn.Module):
    num_items: int
    item_rows: int
    hidden: int = 600
    latent: int = 200
    layers: int = 5
    dropout: float = 0.5

    def setup(self):
        self.encoder = RecVAEEncoder(self.hidden, self.latent, self.layers, self.dropout)
        self.prior = RecVAEEncoder(self.hidden, self.latent, self.layers, self.dropout)
        self.decoder = nn.Dense(self.num_items)

    def __call__(self, bag, deterministic: bool = True):
        """-> (logits float[B, I], mean, log_variance, old mean, old log_variance)."""
        x = multi_hot(bag, self.num_items)
        mean, log_variance = self.encoder(x, deterministic=deterministic)
        z = mean if deterministic else reparameterize(self.make_rng("latent"), mean, log_variance)
        old_mean, old_log_variance = self.prior(x, deterministic=True)
        return self.decoder(z), mean, log_variance, z, old_mean, old_log_variance

    def scores(self, bag):
        logits = self(bag)[0]
        wide = jnp.zeros((bag.shape[0], self.item_rows), logits.dtype)
        return wide.at[:, 1:self.num_items + 1].set(logits)

    def profile(self, bag):
        return self(bag)[1]


def make(config, info) -> nn.Module:
    return RecVAE(num_items=info.num_items, item_rows=info.item_rows, hidden=int(config.hidden),
                  latent=int(config.latent), layers=int(config.layers), dropout=float(config.dropout))


def init(module, rng, batch, *, context):
    params_rng, latent_rng = jax.random.split(rng)
    return module.init({"params": params_rng, "latent": latent_rng}, batch["bag"])


def _kl(z, mean, log_variance, old_mean, old_log_variance):
    """One-sample KL(q(z|x) || p(z|x)) per user: float[B]."""
    return jnp.sum(log_normal(z, mean, log_variance) - composite_log_prior(z, old_mean, old_log_variance), axis=-1)


def losses(module, variables, batch, *, rng, step, context, config):
    dropout_rng, latent_rng, decoder_latent_rng = jax.random.split(rng, 3)
    bag = multi_hot(batch["bag"], module.num_items)
    weights = batch["weights"]
    users = jnp.maximum(weights.sum(), 1.0)
    logits, mean, log_variance, z, old_mean, old_log_variance = module.apply(
        variables, batch["bag"], deterministic=False, rngs={"dropout": dropout_rng, "latent": latent_rng})
    nll = -multinomial_log_likelihood(logits, bag)
    kl = _kl(z, mean, log_variance, jax.lax.stop_gradient(old_mean), jax.lax.stop_gradient(old_log_variance))
    beta = float(config.gamma) * bag.sum(axis=1)
    encoder_loss = jnp.sum((nll + beta * kl) * weights) / users
    # The decoder's phase: the encoder without dropout (a latent still sampled), the likelihood alone.
    params = variables["params"]
    clean_mean, clean_log_variance = module.apply({"params": params}, bag, method=lambda m, x: m.encoder(x))
    clean_z = reparameterize(decoder_latent_rng, clean_mean, clean_log_variance)
    decoder_logits = module.apply({"params": params}, jax.lax.stop_gradient(clean_z), method=lambda m, v: m.decoder(v))
    decoder_loss = -jnp.sum(multinomial_log_likelihood(decoder_logits, bag) * weights) / users
    copy_loss = 0.5 * sum(jnp.sum((p - jax.lax.stop_gradient(e)) ** 2) for p, e in zip(
        jax.tree_util.tree_leaves(params["prior"]), jax.tree_util.tree_leaves(params["encoder"])))
    aux = {"targets": weights.sum(), "nll": jnp.sum(nll * weights) / users, "kl": jnp.sum(kl * weights) / users}
    return {"encoder": encoder_loss, "decoder": decoder_loss, "prior": copy_loss}, aux


def example_scores(module, variables, batch, *, context=None, config=None):
    """Per user at the latent mean: the bag's negative log-likelihood, its size and the KL of
    q(z|x) from the composite prior at z = mean (anomaly scores; see Mult-VAE's)."""
    logits, mean, log_variance, z, old_mean, old_log_variance = module.apply(variables, batch["bag"])
    bag = multi_hot(batch["bag"], module.num_items)
    weights = batch["weights"]
    return {"loss": -multinomial_log_likelihood(logits, bag) * weights, "targets": bag.sum(axis=1) * weights,
            "kl": _kl(z, mean, log_variance, old_mean, old_log_variance) * weights}


def score(module, variables, batch, *, context, scoring):
    return module.apply(variables, batch["bag"], method="scores")


def encode(module, variables, batch, *, context=None, scoring=None):
    return module.apply(variables, batch["bag"], method="profile")


CHECKS = {"hidden": integer(1), "latent": integer(1), "layers": integer(1), "dropout": number(0.0, 1.0),
          "gamma": number(0.0)}

SPEC = ModelSpec("recvae", default_config, make, losses, score, batch_kind="bag", init=init, encode=encode,
                 config_checks=config_keys(CHECKS), example_scores=example_scores,
                 groups=("encoder", "decoder", "prior"))
