"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence.

Trained with cross-entropy over the full catalogue at every position (default, `model.loss=ce`),
with the paper's binary cross-entropy against one sampled negative (`bce`), or, for catalogues too
large for a full softmax, with a sampled softmax corrected by log Q (`sampled`: `model.num_sampled`
negatives shared by the batch, drawn from `model.sampler` = uniform | log_uniform | popularity; see
`stjax.models.shared.sampled_softmax_loss`). Scores read the last position.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from stjax.layers import PositionEmbedding, TransformerBlock
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
    # num_sampled and sampler are read only with loss=sampled. The default sampler is uniform:
    # log_uniform assumes ids ranked by popularity, which stjax's item ids are not.
    return ml_collections.ConfigDict(dict(
        name="sasrec", hidden=64, num_blocks=2, num_heads=2, mlp_ratio=1, dropout=0.2, attention_dropout=0.2,
        loss="ce", dtype="float32", num_sampled=1024, sampler="uniform"))


class SASRec(TiedItemOutput, nn.Module):
    supports_last_only = True
    num_items: int
    max_length: int
    item_rows: int
    hidden: int = 64
    num_blocks: int = 2
    num_heads: int = 2
    mlp_ratio: int = 1
    dropout: float = 0.2
    attention_dropout: float = 0.2
    dtype: str = "float32"

    def setup(self):
        self.item_embedding = item_embedding(self.item_rows, self.hidden)
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


def make(config, info) -> nn.Module:
    return SASRec(num_items=info.num_items, max_length=info.max_length, item_rows=info.item_rows,
                  hidden=config.hidden, num_blocks=config.num_blocks, num_heads=config.num_heads,
                  mlp_ratio=config.mlp_ratio, dropout=config.dropout, attention_dropout=config.attention_dropout,
                  dtype=config.dtype)


SPEC = ModelSpec("sasrec", default_config, make, sequence_losses, last_position_score, encode=last_position_encode,
                 example_scores=sequence_example_scores, make_context=sampled_context)
