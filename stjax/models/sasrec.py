"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence.

Trained with cross-entropy over the full catalogue at every position (default) or with the
paper's binary cross-entropy against one sampled negative. Scores read the last position.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from stjax.layers import PositionEmbedding, TransformerBlock
from stjax.models.base import (
    ModelSpec,
    TiedItemOutput,
    full_softmax_loss,
    item_embedding,
    mask_padding_logits,
    register,
    sampled_bce_loss,
)


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name="sasrec", hidden=64, num_blocks=2, num_heads=2, mlp_ratio=1, dropout=0.2, attention_dropout=0.2,
        loss="ce", dtype="float32"))


class SASRec(TiedItemOutput, nn.Module):
    supports_last_only = True
    num_items: int
    max_length: int
    hidden: int = 64
    num_blocks: int = 2
    num_heads: int = 2
    mlp_ratio: int = 1
    dropout: float = 0.2
    attention_dropout: float = 0.2
    dtype: str = "float32"

    def setup(self):
        self.item_embedding = item_embedding(self.num_items + 1, self.hidden)
        self.positions = PositionEmbedding(self.max_length)
        self.blocks = [TransformerBlock(self.num_heads, self.hidden * self.mlp_ratio, self.dropout,
                                        self.attention_dropout, causal=True, pre_norm=True, dtype=jnp.dtype(self.dtype))
                       for _ in range(self.num_blocks)]
        self.final_norm = nn.LayerNorm()
        self.input_dropout = nn.Dropout(self.dropout)

    def __call__(self, items, timestamps=None, deterministic: bool = True, last_only: bool = False):
        """items: int32[B, T] (left-padded) -> hidden float32[B, T, D] ([B, 1, D] when last_only)."""
        padding = items > 0
        x = self.item_embedding(items) * jnp.sqrt(self.hidden)
        x = self.positions(x)
        x = self.input_dropout(x, deterministic=deterministic) * padding[..., None]
        for index, block in enumerate(self.blocks):
            x, _ = block(x, padding, deterministic, last_only=last_only and index == len(self.blocks) - 1)
        return self.final_norm(x.astype(jnp.float32))


def make(config, num_items: int, max_length: int) -> nn.Module:
    return SASRec(num_items, max_length, config.hidden, config.num_blocks, config.num_heads, config.mlp_ratio,
                  config.dropout, config.attention_dropout, config.dtype)


def sequence_loss(module, params, batch, rng, config):
    """Shared by every left-to-right sequence model: CE over the catalogue or sampled BCE."""
    dropout_rng, negative_rng = jax.random.split(rng)
    hidden = module.apply(params, batch["items"], batch["timestamps"], deterministic=False, rngs={"dropout": dropout_rng})
    if config.get("loss", "ce") == "bce":
        table = module.apply(params, method="embeddings")
        loss, count = sampled_bce_loss(hidden, table, batch["targets"], batch["weights"], negative_rng, module.num_items)
    else:
        loss, count = full_softmax_loss(module.apply(params, hidden, method="logits"), batch["targets"], batch["weights"])
    return loss, {"targets": count}


def last_position_score(module, params, batch):
    """Scores of all items from the hidden state at the last (most recent) position.

    Models that accept `last_only` compute only that position's query in their last block.
    """
    kwargs = {"last_only": True} if getattr(module, "supports_last_only", False) else {}
    hidden = module.apply(params, batch["items"], batch["timestamps"], deterministic=True, **kwargs)[:, -1]
    return mask_padding_logits(module.apply(params, hidden, method="logits").astype(jnp.float32))


SPEC = register(ModelSpec("sasrec", default_config, make, sequence_loss, last_position_score))
