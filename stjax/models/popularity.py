"""Popularity baseline: a learned bias per item under the full softmax, i.e. the maximum-
likelihood estimate of item frequencies in the training targets; the history is ignored."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from stjax.models.base import ModelSpec, full_softmax_loss, mask_padding_logits, register


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name="popularity"))


class Popularity(nn.Module):
    num_items: int
    max_length: int

    @nn.compact
    def __call__(self, items, timestamps=None, deterministic: bool = True):
        bias = self.param("item_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                          (self.num_items + 1,))
        return jnp.broadcast_to(bias, (*items.shape, self.num_items + 1))  # [B, T, I+1]


def make(config, num_items: int, max_length: int) -> nn.Module:
    return Popularity(num_items, max_length)


def loss(module, params, batch, rng, config):
    logits = module.apply(params, batch["items"])
    value, count = full_softmax_loss(logits, batch["targets"], batch["weights"])
    return value, {"targets": count}


def score(module, params, batch):
    return mask_padding_logits(module.apply(params, batch["items"][:, -1:])[:, 0])


SPEC = register(ModelSpec("popularity", default_config, make, loss, score))
