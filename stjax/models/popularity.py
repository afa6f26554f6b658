"""Popularity baseline: a learned bias per item under the full softmax, i.e. the maximum-
likelihood estimate of item frequencies in the training targets; the history is ignored."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from stjax.models.base import ModelSpec
from stjax.models.shared import full_softmax_loss


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name="popularity"))


class Popularity(nn.Module):
    num_items: int
    item_rows: int

    @nn.compact
    def __call__(self, items, timestamps=None, deterministic: bool = True):
        """items: int32[B, T] -> float[B, T, W] (the same bias row everywhere)."""
        bias = self.param("item_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                          (self.item_rows,))
        return jnp.broadcast_to(bias, (*items.shape, self.item_rows))


def make(config, info) -> nn.Module:
    return Popularity(num_items=info.num_items, item_rows=info.item_rows)


def losses(module, variables, batch, *, rng, step, context, config):
    logits = module.apply(variables, batch["items"])
    value, count = full_softmax_loss(logits, batch["targets"], batch["weights"], module.num_items)
    return {"model": value}, {"targets": count}


def score(module, variables, batch, *, context=None, scoring=None):
    return module.apply(variables, batch["items"][:, -1:])[:, 0]


SPEC = ModelSpec("popularity", default_config, make, losses, score)
