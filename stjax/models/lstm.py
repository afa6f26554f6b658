"""An LSTM next-item model: GRU4Rec's architecture with an LSTM cell (forget bias 1)."""

from __future__ import annotations

import flax.linen as nn
import ml_collections

from stjax.models.base import ModelSpec, register
from stjax.models.gru4rec import RecurrentRecommender
from stjax.models.sasrec import last_position_score, sequence_loss


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name="lstm", hidden=64, state=128, num_layers=1, dropout=0.3, loss="ce"))


def make(config, num_items: int, max_length: int) -> nn.Module:
    return RecurrentRecommender(num_items, max_length, "lstm", config.hidden, config.state, config.num_layers,
                                config.dropout)


SPEC = register(ModelSpec("lstm", default_config, make, sequence_loss, last_position_score))
