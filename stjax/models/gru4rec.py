"""GRU4Rec (Hidasi et al., ICLR 2016), in the full-softmax form used by RecBole: item
embeddings -> GRU -> projection, scored against the (tied) item embeddings."""

from __future__ import annotations

import flax.linen as nn
import ml_collections

from stjax.layers import RNN
from stjax.models.base import ModelSpec, TiedItemOutput, item_embedding, register
from stjax.models.sasrec import last_position_score, sequence_loss


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name="gru4rec", hidden=64, state=128, num_layers=1, dropout=0.3, loss="ce"))


class RecurrentRecommender(TiedItemOutput, nn.Module):
    """Shared by GRU4Rec and the LSTM model: the cell is the only difference."""

    num_items: int
    max_length: int
    cell: str = "gru"
    hidden: int = 64
    state: int = 128
    num_layers: int = 1
    dropout: float = 0.3

    def setup(self):
        self.item_embedding = item_embedding(self.num_items + 1, self.hidden)
        self.rnn = RNN(cell=self.cell, hidden=self.state, num_layers=self.num_layers,
                       forget_bias=1.0 if self.cell == "lstm" else 0.0)
        self.projection = nn.Dense(self.hidden)
        self.input_dropout = nn.Dropout(self.dropout)

    def __call__(self, items, timestamps=None, deterministic: bool = True):
        padding = items > 0
        x = self.input_dropout(self.item_embedding(items), deterministic=deterministic)
        outputs, _ = self.rnn(x, padding, deterministic)
        return self.projection(outputs)


def make(config, num_items: int, max_length: int) -> nn.Module:
    return RecurrentRecommender(num_items, max_length, "gru", config.hidden, config.state, config.num_layers,
                                config.dropout)


SPEC = register(ModelSpec("gru4rec", default_config, make, sequence_loss, last_position_score))
