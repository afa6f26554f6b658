"""TiSASRec (Li, Wang & McAuley, WSDM 2020): SASRec whose attention also sees clipped,
personalised time intervals between events and absolute positions in keys and values."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from stjax.layers import TimeIntervalBlock
from stjax.models.base import ModelSpec
from stjax.models.shared import (
    TiedItemOutput,
    item_embedding,
    last_position_encode,
    last_position_score,
    sampled_context,
    sequence_example_scores,
    sequence_losses,
)


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name="tisasrec", hidden=64, num_blocks=2, num_heads=2, mlp_ratio=1, dropout=0.2, max_interval=256,
        loss="ce", dtype="float32", num_sampled=1024, sampler="uniform"))


class TiSASRec(TiedItemOutput, nn.Module):
    num_items: int
    max_length: int
    item_rows: int
    hidden: int = 64
    num_blocks: int = 2
    num_heads: int = 2
    mlp_ratio: int = 1
    dropout: float = 0.2
    max_interval: int = 256
    dtype: str = "float32"

    def setup(self):
        self.item_embedding = item_embedding(self.item_rows, self.hidden)
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


def make(config, info) -> nn.Module:
    return TiSASRec(num_items=info.num_items, max_length=info.max_length, item_rows=info.item_rows,
                    hidden=config.hidden, num_blocks=config.num_blocks, num_heads=config.num_heads,
                    mlp_ratio=config.mlp_ratio, dropout=config.dropout, max_interval=config.max_interval,
                    dtype=config.dtype)


SPEC = ModelSpec("tisasrec", default_config, make, sequence_losses, last_position_score,
                 encode=last_position_encode,
                 example_scores=sequence_example_scores, make_context=sampled_context)
