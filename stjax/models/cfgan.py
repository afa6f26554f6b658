"""CFGAN (Chae et al., CIKM 2018): a conditional GAN whose generator writes a user's whole
purchase vector, in the user-oriented form, as two parameter groups.

  generator      G(c_u) = r_hat_u float[B, I] in (0, 1): an MLP of the user's multi-hot c_u (no
                 noise z, as in the authors' code), sigmoid between layers and at the output
  discriminator  D(r, c_u): a logit of "real" from [c_u, r] float[B, 2I] (the layers' Discriminator)

The real vector is the user's own purchases, r_u = e_u = c_u. Each step draws two independent
sets of negatives among the items the user did not buy, each item with probability `zr_ratio`
(resp. `pm_ratio`): k_ZR and k_PM, float[B, I] masks. Partial masking (PM) shows D the generated
vector on the purchased items and the PM negatives, r_hat ⊙ (e_u + k_PM), so that G cannot fool D
by scoring every item 1; zero reconstruction (ZR) adds zr_weight Σ_j k_ZR,j r_hat_j² to G's loss,
pulling sampled negatives toward 0. Losses (`gan_loss`, non-saturating in the authors' code):

  discriminator  softplus(-D(e_u, c_u)) + softplus(D(r_hat ⊙ (e_u + k_PM), c_u)) + l2_D |θ_D|²/2
  generator      softplus(-D(r_hat ⊙ (e_u + k_PM), c_u)) + zr_weight Σ_j k_ZR,j r_hat_j² + l2_G |θ_G|²/2

each averaged over the batch's real users. The engine gives each group the gradient of its own
loss from one forward pass, so the two players step together (simultaneous updates, not the
authors' alternating epochs); `train.groups.<g>.every` slows one of them, and the
discriminator's learning rate defaults to its own 1e-3 (`engine_defaults`). A user's scores are
r_hat over all items. Differences from the authors' code: D's hidden units are leaky ReLU (the
layer's) rather than sigmoid; G's output is a sigmoid rather than linear (against a leaky-ReLU D
a linear G wins by scaling its vector up, as D's logit grows with it); negatives are drawn item by
item rather than exactly ratio x |unpurchased| without replacement (the counts differ by about
sqrt(n p (1 - p)) items, and a sort of a [B, I] matrix per step is saved).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from stjax.layers.generative import Discriminator, Generator, gan_losses
from stjax.models.base import ModelSpec, config_keys, integer, number, one_of
from stjax.models.multvae import multi_hot

GAN_LOSSES = ("non_saturating", "hinge")  # wasserstein needs a critic constraint this model has not


def default_config() -> ml_collections.ConfigDict:
    """The authors' ML-1M settings (their `parameters.py`): one hidden layer of 300 (G) and 250 (D),
    ZR and PM each over 90% of the unpurchased items, ZR weight 0.03, L2 0.001 on G, 5e-5 on D."""
    return ml_collections.ConfigDict(dict(
        name="cfgan", generator_hidden=300, generator_layers=1, discriminator_hidden=250, discriminator_layers=1,
        zr_ratio=0.9, pm_ratio=0.9, zr_weight=0.03, generator_l2=1e-3, discriminator_l2=5e-5,
        gan_loss="non_saturating"))


class CFGAN(nn.Module):
    num_items: int
    item_rows: int
    generator_hidden: int = 300
    generator_layers: int = 1
    discriminator_hidden: int = 250
    discriminator_layers: int = 1

    def setup(self):
        self.generator = Generator(hidden=(self.generator_hidden,) * self.generator_layers, out=self.num_items,
                                   activation="sigmoid", output_activation="sigmoid")
        self.discriminator = Discriminator(hidden=(self.discriminator_hidden,) * self.discriminator_layers)

    def generate(self, purchases):
        """purchases (c_u = e_u) float[B, I] -> r_hat float[B, I]."""
        return self.generator(purchases)

    def discriminate(self, vectors, purchases):
        """D's logit that `vectors` float[B, I] are the real purchases of the users `purchases`
        float[B, I] -> float[B]."""
        return self.discriminator(jnp.concatenate([purchases, vectors], axis=-1))

    def __call__(self, bag):
        """bag int32[B, L] (0 = padding) -> (r_hat float[B, I], D's logit of the real vectors float[B])."""
        purchases = multi_hot(bag, self.num_items)
        return self.generate(purchases), self.discriminate(purchases, purchases)

    def scores(self, bag):
        r_hat = self.generate(multi_hot(bag, self.num_items))
        wide = jnp.zeros((bag.shape[0], self.item_rows), r_hat.dtype)
        return wide.at[:, 1:self.num_items + 1].set(r_hat)  # [B, W]


def make(config, info) -> nn.Module:
    return CFGAN(num_items=info.num_items, item_rows=info.item_rows, generator_hidden=int(config.generator_hidden),
                 generator_layers=int(config.generator_layers),
                 discriminator_hidden=int(config.discriminator_hidden),
                 discriminator_layers=int(config.discriminator_layers))


def init(module, rng, batch, *, context):
    return module.init(rng, batch["bag"])


def sample_negatives(key: jax.Array, purchases: jax.Array, ratio: float) -> jax.Array:
    """Each item the user did not buy, independently with probability `ratio`.

    purchases: float[B, I] (1 = bought) -> float[B, I] mask of the sampled negatives (never a
    purchased item). The uniforms are `jax.random.uniform(key, purchases.shape)`: item j of user b
    is taken when its uniform is below `ratio`."""
    uniforms = jax.random.uniform(key, purchases.shape)
    return ((uniforms < ratio) & (purchases == 0)).astype(purchases.dtype)


def _squared_norm(tree) -> jax.Array:
    return sum(jnp.sum(leaf ** 2) for leaf in jax.tree_util.tree_leaves(tree))


def cfgan_losses(module, params, purchases, weights, zr_mask, pm_mask, config):
    """({"generator", "discriminator"}, aux) from the masks of the step (see the module docstring).

    purchases, zr_mask, pm_mask: float[B, I]; weights: float[B] (0 = padding row)."""
    variables = {"params": params}
    r_hat = module.apply(variables, purchases, method="generate")  # [B, I]
    fake = r_hat * (purchases + pm_mask)  # PM: D sees G's values on e_u + k_PM only
    real_logits = module.apply(variables, purchases, purchases, method="discriminate")  # [B]
    fake_logits = module.apply(variables, fake, purchases, method="discriminate")  # [B]
    # The layer's losses are batch means: applied row by row, so that padding rows weigh nothing.
    d_rows, g_rows = jax.vmap(lambda real, generated: gan_losses(real[None], generated[None], config.gan_loss))(
        real_logits, fake_logits)
    users = jnp.maximum(weights.sum(), 1.0)
    zero_reconstruction = jnp.sum(jnp.sum(zr_mask * r_hat ** 2, axis=-1) * weights) / users
    discriminator_loss = jnp.sum(d_rows * weights) / users \
        + float(config.discriminator_l2) * 0.5 * _squared_norm(params["discriminator"])
    generator_loss = jnp.sum(g_rows * weights) / users + float(config.zr_weight) * zero_reconstruction \
        + float(config.generator_l2) * 0.5 * _squared_norm(params["generator"])
    aux = {"targets": weights.sum(), "zero_reconstruction": zero_reconstruction,
           "real_probability": jnp.sum(jax.nn.sigmoid(real_logits) * weights) / users,
           "fake_probability": jnp.sum(jax.nn.sigmoid(fake_logits) * weights) / users}
    return {"generator": generator_loss, "discriminator": discriminator_loss}, aux


def losses(module, variables, batch, *, rng, step, context, config):
    zr_rng, pm_rng = jax.random.split(rng)
    purchases = multi_hot(batch["bag"], module.num_items)
    zr_mask = sample_negatives(zr_rng, purchases, float(config.zr_ratio))
    pm_mask = sample_negatives(pm_rng, purchases, float(config.pm_ratio))
    return cfgan_losses(module, variables["params"], purchases, batch["weights"], zr_mask, pm_mask, config)


def engine_defaults(config) -> None:
    """The discriminator's learning rate is its own (1e-3 unless set), not `train.learning_rate`:
    a discriminator raised to a generator's high rate memorises the batch, the game collapses and
    G's loss climbs (how `tests/test_models_protocol.py` runs every model, at 2e-2)."""
    config.train.groups.discriminator.learning_rate = 1e-3


def score(module, variables, batch, *, context, scoring):
    return module.apply(variables, batch["bag"], method="scores")


CHECKS = {"generator_hidden": integer(1), "generator_layers": integer(1), "discriminator_hidden": integer(1),
          "discriminator_layers": integer(0), "zr_ratio": number(0.0, 1.0, high_open=False),
          "pm_ratio": number(0.0, 1.0, high_open=False), "zr_weight": number(0.0), "generator_l2": number(0.0),
          "discriminator_l2": number(0.0), "gan_loss": one_of(*GAN_LOSSES)}

SPEC = ModelSpec("cfgan", default_config, make, losses, score, batch_kind="bag", init=init,
                 config_checks=config_keys(CHECKS), groups=("generator", "discriminator"),
                 engine_defaults=engine_defaults)
