"""Mult-VAE (Liang et al., WWW 2018): a variational autoencoder of each user's bag of items with a
multinomial likelihood, trained with annealed KL (beta up to `model.beta_cap`, linearly over
`model.anneal_steps`), input dropout, and the paper's architecture [I -> 600 -> 200 -> 600 -> I],
tanh. `stjax/models/multdae.py` is its denoising twin (no KL, [I -> 200 -> I]).

A user's input is the L2-normalised multi-hot of their (folded-in) items; scores are the decoder's
logits at the mean of the latent (no sampling at evaluation), column 0 and the table's padding
columns left to the engine's mask. `encode` gives that mean: the user's profile vector.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from stjax.layers.generative import (
    VAEDecoder,
    VAEEncoder,
    beta_schedule,
    gaussian_kl,
    multinomial_log_likelihood,
    reparameterize,
)
from stjax.models.base import ModelSpec, config_keys, integer, number


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name="multvae", hidden=600, latent=200, dropout=0.5, beta_cap=0.2,
                                          anneal_steps=20_000))


def multi_hot(bag: jax.Array, num_items: int) -> jax.Array:
    """bag int32[B, L] (0 = padding) -> float32[B, I] over the items 1..I."""
    rows = jnp.arange(bag.shape[0])[:, None]
    return jnp.zeros((bag.shape[0], num_items + 1), jnp.float32).at[rows, bag].set(1.0)[:, 1:]


class MultVAE(nn.Module):
    num_items: int
    item_rows: int
    hidden: tuple[int, ...] = (600,)
    latent: int = 200
    dropout: float = 0.5
    variational: bool = True

    def setup(self):
        self.encoder = VAEEncoder(hidden=self.hidden, latent=self.latent, input_dropout=self.dropout)
        self.decoder = VAEDecoder(hidden=self.hidden, out=self.num_items)

    def __call__(self, bag, deterministic: bool = True):
        """-> (item logits float[B, I], mean, log_variance float[B, latent])."""
        mean, log_variance = self.encoder(multi_hot(bag, self.num_items), deterministic=deterministic)
        if not self.variational:
            mean = jnp.tanh(mean)  # Mult-DAE: the 200-unit tanh code is the user's representation
        z = reparameterize(self.make_rng("latent"), mean, log_variance) \
            if self.variational and not deterministic else mean
        return self.decoder(z), mean, log_variance

    def scores(self, bag):
        logits, _, _ = self(bag)
        wide = jnp.zeros((bag.shape[0], self.item_rows), logits.dtype)
        return wide.at[:, 1:self.num_items + 1].set(logits)  # [B, W]

    def profile(self, bag):
        return self(bag)[1]


def _make(variational: bool):
    def make(config, info) -> nn.Module:
        hidden = (int(config.hidden),) if config.hidden else ()
        return MultVAE(num_items=info.num_items, item_rows=info.item_rows, hidden=hidden, latent=int(config.latent),
                       dropout=float(config.dropout), variational=variational)

    return make


def init(module, rng, batch, *, context):
    params_rng, latent_rng = jax.random.split(rng)
    return module.init({"params": params_rng, "latent": latent_rng}, batch["bag"])


def losses(module, variables, batch, *, rng, step, context, config):
    """Negative multinomial log-likelihood of each user's bag (+ beta x KL for the VAE), averaged
    over the batch's users."""
    dropout_rng, latent_rng = jax.random.split(rng)
    logits, mean, log_variance = module.apply(variables, batch["bag"], deterministic=False,
                                              rngs={"dropout": dropout_rng, "latent": latent_rng})
    weights = batch["weights"]
    users = jnp.maximum(weights.sum(), 1.0)
    nll = -jnp.sum(multinomial_log_likelihood(logits, multi_hot(batch["bag"], module.num_items)) * weights) / users
    aux = {"targets": weights.sum(), "nll": nll}
    if not module.variational:
        return {"model": nll}, aux
    kl = jnp.sum(gaussian_kl(mean, log_variance) * weights) / users
    beta = beta_schedule(step, int(config.anneal_steps), float(config.beta_cap))
    return {"model": nll + beta * kl}, aux | {"kl": kl, "beta": beta}


def example_scores(module, variables, batch, *, context=None, config=None):
    """Per user, without dropout and at the latent mean: the bag's negative multinomial
    log-likelihood (`loss`), its size (`targets`) and, for the VAE, the KL of q(z|x) from the prior
    (`kl`, how unusual the user's latent is). loss / targets is a user's reconstruction surprise per
    item (anomaly scores)."""
    logits, mean, log_variance = module.apply(variables, batch["bag"], deterministic=True)
    bag = multi_hot(batch["bag"], module.num_items)
    weights = batch["weights"]
    out = {"loss": -multinomial_log_likelihood(logits, bag) * weights, "targets": bag.sum(axis=1) * weights}
    if module.variational:
        out["kl"] = gaussian_kl(mean, log_variance) * weights
    return out


def score(module, variables, batch, *, context, scoring):
    return module.apply(variables, batch["bag"], method="scores")


def encode(module, variables, batch, *, context=None, scoring=None):
    return module.apply(variables, batch["bag"], method="profile")


CHECKS = {"latent": integer(1), "hidden": integer(0), "beta_cap": number(0.0), "anneal_steps": integer(1)}

SPEC = ModelSpec("multvae", default_config, _make(True), losses, score, batch_kind="bag", init=init, encode=encode,
                 config_checks=config_keys(CHECKS), example_scores=example_scores)
