"""TiSASRec (Li, Wang & McAuley, WSDM 2020): SASRec whose attention also sees clipped,
personalised time intervals between events and absolute positions in keys and values."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from stjax.layers import TimeIntervalBlock
from stjax.models.base import ModelSpec, TiedItemOutput, item_embedding, register
from stjax.models.sasrec import last_position_score, sequence_loss


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name="tisasrec", hidden=64, num_blocks=2, num_heads=2, mlp_ratio=1, dropout=0.2, max_interval=256,
        loss="ce", dtype="float32"))


class TiSASRec(TiedItemOutput, nn.Module):
    num_items: int
    max_length: int
    hidden: int = 64
    num_blocks: int = 2
    num_heads: int = 2
    mlp_ratio: int = 1
    dropout: float = 0.2
    max_interval: int = 256
    dtype: str = "float32"

    def setup(self):
        self.item_embedding = item_embedding(self.num_items + 1, self.hidden)
        self.blocks = [TimeIntervalBlock(self.num_heads, self.hidden * self.mlp_ratio, self.max_interval,
                                         self.max_length, self.dropout, dtype=jnp.dtype(self.dtype))
                       for _ in range(self.num_blocks)]
        self.final_norm = nn.LayerNorm()
        self.input_dropout = nn.Dropout(self.dropout)

    def __call__(self, items, timestamps, deterministic: bool = True):
        """items, timestamps: int32[B, T] -> hidden float32[B, T, D]."""
        padding = items > 0
        x = self.item_embedding(items) * jnp.sqrt(self.hidden)
        x = self.input_dropout(x, deterministic=deterministic) * padding[..., None]
        for block in self.blocks:
            x, _ = block(x, timestamps, padding, deterministic)
        return self.final_norm(x.astype(jnp.float32))


def make(config, num_items: int, max_length: int) -> nn.Module:
    return TiSASRec(num_items, max_length, config.hidden, config.num_blocks, config.num_heads, config.mlp_ratio,
                    config.dropout, config.max_interval, config.dtype)


SPEC = register(ModelSpec("tisasrec", default_config, make, sequence_loss, last_position_score))
