"""BERT4Rec (Sun et al., CIKM 2019): bidirectional self-attention trained by cloze.

A fraction `mask_probability` of the real items of each training sequence is replaced by a
[mask] token (id I+1) and predicted over the catalogue. To score, the history is shifted
left by one and [mask] is appended as the last position; its output ranks the items.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from stjax.layers import PositionEmbedding, TransformerBlock
from stjax.models.base import ModelSpec
from stjax.models.shared import full_softmax_loss, item_embedding


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name="bert4rec", hidden=64, num_blocks=2, num_heads=2, mlp_ratio=4, dropout=0.2, mask_probability=0.2,
        dtype="float32"))


class BERT4Rec(nn.Module):
    num_items: int
    max_length: int
    item_rows: int  # the I+1 items, the [mask] row I+1, padded to the shards
    hidden: int = 64
    num_blocks: int = 2
    num_heads: int = 2
    mlp_ratio: int = 4
    dropout: float = 0.2
    dtype: str = "float32"

    def setup(self):
        # Row I+1 is the [mask] token; it is scored like an item and then dropped.
        self.item_embedding = item_embedding(self.item_rows, self.hidden)
        self.positions = PositionEmbedding(self.max_length)
        self.blocks = [TransformerBlock(self.num_heads, self.hidden * self.mlp_ratio, self.dropout, self.dropout,
                                        causal=False, pre_norm=True, dtype=jnp.dtype(self.dtype))
                       for _ in range(self.num_blocks)]
        self.final_norm = nn.LayerNorm()
        self.input_dropout = nn.Dropout(self.dropout)
        self.output_bias = self.param("output_bias", nn.initializers.zeros, (self.item_rows,))

    def __call__(self, items, timestamps=None, deterministic: bool = True):
        padding = items > 0
        x = self.positions(self.item_embedding(items))
        x = self.input_dropout(x, deterministic=deterministic) * padding[..., None]
        for block in self.blocks:
            x, _ = block(x, padding, deterministic)
        return self.final_norm(x.astype(jnp.float32))

    def logits(self, hidden):
        """float[..., W]: the [mask] column (I+1) and padding rows above it are masked by the losses and scores."""
        return self.item_embedding.attend(hidden) + self.output_bias


def make(config, info) -> nn.Module:
    return BERT4Rec(num_items=info.num_items, max_length=info.max_length, item_rows=info.table_rows(extra=1),
                    hidden=config.hidden, num_blocks=config.num_blocks, num_heads=config.num_heads,
                    mlp_ratio=config.mlp_ratio, dropout=config.dropout, dtype=config.dtype)


def cloze_init(module, rng, batch, *, context=None):
    return module.init(rng, batch["items"])


def cloze_losses(module, variables, batch, *, rng, step, context, config):
    mask_rng, dropout_rng = jax.random.split(rng)
    # The training window holds inputs plus the final target: rebuild the full sequence.
    sequence = jnp.concatenate([batch["items"][:, 1:], batch["targets"][:, -1:]], axis=1)
    sequence = jnp.where(batch["targets"][:, -1:] > 0, sequence, batch["items"])
    real = sequence > 0
    chosen = jax.random.bernoulli(mask_rng, config.mask_probability, sequence.shape) & real
    # Always mask the last real item too, so every sequence trains the scoring position.
    chosen = chosen.at[:, -1].set(real[:, -1])
    inputs = jnp.where(chosen, module.num_items + 1, sequence)
    targets = jnp.where(chosen, sequence, 0)
    hidden = module.apply(variables, inputs, deterministic=False, rngs={"dropout": dropout_rng})
    logits = module.apply(variables, hidden, method="logits")
    loss, count = full_softmax_loss(logits, targets, batch["weights"], module.num_items)
    return {"model": loss}, {"targets": count}


def cloze_encode(module, variables, batch, *, context=None, scoring=None):
    """The [mask] position's hidden state after the history: float[B, D]."""
    items = batch["items"]
    shifted = jnp.concatenate([items[:, 1:], jnp.full((items.shape[0], 1), module.num_items + 1, items.dtype)], 1)
    return module.apply(variables, shifted, deterministic=True)[:, -1]


def cloze_score(module, variables, batch, *, context=None, scoring=None):
    hidden = cloze_encode(module, variables, batch)
    return module.apply(variables, hidden, method="logits")


SPEC = ModelSpec("bert4rec", default_config, make, cloze_losses, cloze_score, init=cloze_init, encode=cloze_encode)
