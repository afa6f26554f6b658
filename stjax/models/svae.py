"""SVAE, the sequential variational autoencoder (Sachdeva et al., WSDM 2019): a GRU reads the
user's items; at each step t its state gives q(z_t | x_1..t) = N(mean_t, diag exp(log_variance_t))
(an MLP, tanh); an MLP decoder maps z_t to a softmax over all items, whose multinomial likelihood
is that of the next `model.next_k` items (1: the next item). Trained on the ELBO per step,
NLL + beta * KL, beta = min(`model.beta_cap`, step / `model.anneal_steps`) (Mult-VAE's schedule).

Scores are the decoder's logits at the last step's posterior mean (no sampling at evaluation); the
paper's sizes are item embeddings 256, GRU 200, MLP 150, latent 64. `encode` gives that mean.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from stjax.layers import RNN
from stjax.layers.generative import (
    VAEDecoder,
    VAEEncoder,
    beta_schedule,
    gaussian_kl,
    reparameterize,
)
from stjax.models.base import ModelSpec, config_keys, integer, number
from stjax.models.shared import item_embedding

Array = jax.Array


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name="svae", hidden=64, state=200, mlp_hidden=150, latent=64, next_k=1,
                                          dropout=0.2, beta_cap=0.2, anneal_steps=2_000))


def next_k_targets(targets: Array, next_k: int) -> Array:
    """The next `next_k` items after each position, from the batch's next-item targets.

    targets: int32[B, T], targets[:, t] the item after position t (0 = none) -> int32[B, T, K] with
    out[:, t, j] = targets[:, t + j]: 0 where position t has no target and past the window's end
    (the last positions of a window see fewer than K items).
    """
    time = targets.shape[1]
    shifted = [jnp.pad(targets[:, j:], ((0, 0), (0, j))) if j < time else jnp.zeros_like(targets)
               for j in range(next_k)]
    return jnp.where(targets[..., None] > 0, jnp.stack(shifted, axis=-1), 0)  # [B, T, K]


def next_k_nll(item_logits: Array, targets: Array) -> Array:
    """Negative multinomial log-likelihood of each step's target items.

    item_logits: float[B, T, I] (column j is item j + 1); targets: int32[B, T, K] in 0..I (0 = none)
    -> float[B, T]: -sum_j log softmax(item_logits[b, t])[targets[b, t, j]] over the real targets
    (a repeated item counts twice, as a count of 2 in the multinomial).
    """
    item_logits = item_logits.astype(jnp.float32)
    log_norm = jax.nn.logsumexp(item_logits, axis=-1)  # [B, T]
    # Target 0 (none) reads column 0 and is masked out; every logit is finite, so no inf * 0.
    picked = jnp.take_along_axis(item_logits, jnp.maximum(targets - 1, 0), axis=-1)  # [B, T, K]
    return jnp.sum((log_norm[..., None] - picked) * (targets > 0), axis=-1)


class SVAE(nn.Module):
    num_items: int
    item_rows: int
    hidden: int = 64
    state: int = 200
    mlp_hidden: int = 150
    latent: int = 64
    next_k: int = 1
    dropout: float = 0.2

    def setup(self):
        self.item_embedding = item_embedding(self.item_rows, self.hidden)
        self.rnn = RNN(cell="gru", hidden=self.state)
        self.encoder = VAEEncoder(hidden=(self.mlp_hidden,), latent=self.latent, normalize_input=False)
        self.decoder = VAEDecoder(hidden=(self.mlp_hidden,), out=self.num_items)
        self.input_dropout = nn.Dropout(self.dropout)

    def states(self, items, deterministic: bool = True):
        """items: int32[B, T] (left-padded) -> GRU outputs float[B, T, S] (0 at padded steps)."""
        x = self.input_dropout(self.item_embedding(items), deterministic=deterministic)
        outputs, _ = self.rnn(x, items > 0, deterministic)
        return outputs

    def __call__(self, items, timestamps=None, deterministic: bool = True):
        """items: int32[B, T] -> (item logits float[B, T, I], mean, log_variance float[B, T, latent]);
        z_t is sampled (rng 'latent') when not deterministic, else the mean."""
        mean, log_variance = self.encoder(self.states(items, deterministic))  # [B, T, latent] each
        z = mean if deterministic else reparameterize(self.make_rng("latent"), mean, log_variance)
        return self.decoder(z), mean, log_variance

    def profile(self, items):
        """The last step's posterior mean: float[B, latent] (the GRU runs over the whole window)."""
        return self.encoder(self.states(items)[:, -1])[0]

    def scores(self, items):
        """Decoder logits at the last step's posterior mean, widened to the table: float[B, W]."""
        logits = self.decoder(self.profile(items))  # [B, I]
        wide = jnp.zeros((items.shape[0], self.item_rows), logits.dtype)
        return wide.at[:, 1:self.num_items + 1].set(logits)


def make(config, info) -> nn.Module:
    return SVAE(num_items=info.num_items, item_rows=info.item_rows, hidden=int(config.hidden),
                state=int(config.state), mlp_hidden=int(config.mlp_hidden), latent=int(config.latent),
                next_k=int(config.next_k), dropout=float(config.dropout))


def losses(module, variables, batch, *, rng, step, context, config):
    """The negative ELBO per step, averaged over the steps with a target: the next `next_k` items'
    multinomial NLL + beta(step) x KL(q(z_t | x_1..t) || N(0, I)), z_t sampled."""
    dropout_rng, latent_rng = jax.random.split(rng)
    logits, mean, log_variance = module.apply(variables, batch["items"], deterministic=False,
                                              rngs={"dropout": dropout_rng, "latent": latent_rng})
    targets = next_k_targets(batch["targets"], module.next_k)  # [B, T, K]
    steps = (batch["targets"] > 0) * batch["weights"][:, None]  # [B, T]
    count = jnp.maximum(steps.sum(), 1.0)
    nll = next_k_nll(logits, targets)  # [B, T]
    kl = gaussian_kl(mean.astype(jnp.float32), log_variance.astype(jnp.float32))  # [B, T]
    beta = beta_schedule(step, int(config.anneal_steps), float(config.beta_cap))
    items = ((targets > 0).sum(-1) * steps).sum()
    loss = jnp.sum((nll + beta * kl) * steps) / count
    return {"model": loss}, {"targets": items, "nll": jnp.sum(nll * steps) / jnp.maximum(items, 1.0),
                             "kl": jnp.sum(kl * steps) / count, "beta": beta}


def example_scores(module, variables, batch, *, context=None, config=None):
    """Per row, without dropout and at the posterior means: the summed NLL of every step's next
    `next_k` items (`loss`), their number (`targets`) and the summed KL of the steps (`kl`).
    loss / targets is a user's surprise per item; sum(loss) / sum(targets) is the batch's `nll`."""
    logits, mean, log_variance = module.apply(variables, batch["items"], deterministic=True)
    targets = next_k_targets(batch["targets"], module.next_k)
    steps = (batch["targets"] > 0) * batch["weights"][:, None]
    return {"loss": jnp.sum(next_k_nll(logits, targets) * steps, axis=1),
            "targets": jnp.sum((targets > 0).sum(-1) * steps, axis=1),
            "kl": jnp.sum(gaussian_kl(mean, log_variance) * steps, axis=1)}


def score(module, variables, batch, *, context=None, scoring=None):
    return module.apply(variables, batch["items"], method="scores")


def encode(module, variables, batch, *, context=None, scoring=None):
    return module.apply(variables, batch["items"], method="profile")


CHECKS = {"mlp_hidden": integer(1), "latent": integer(1), "next_k": integer(1), "beta_cap": number(0.0),
          "anneal_steps": integer(1)}

SPEC = ModelSpec("svae", default_config, make, losses, score, encode=encode, example_scores=example_scores,
                 config_checks=config_keys(CHECKS))
