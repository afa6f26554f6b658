"""An LSTM next-item model: GRU4Rec's architecture with an LSTM cell (forget bias 1)."""

from __future__ import annotations

import ml_collections

from stjax.models.base import ModelSpec
from stjax.models.shared import (
    last_position_encode,
    last_position_score,
    make_recurrent,
    sampled_context,
    sequence_example_scores,
    sequence_losses,
)


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name="lstm", hidden=64, state=128, num_layers=1, dropout=0.3, loss="ce",
                                      num_sampled=1024, sampler="uniform"))


SPEC = ModelSpec("lstm", default_config, make_recurrent("lstm"), sequence_losses, last_position_score,
                 encode=last_position_encode,
                 example_scores=sequence_example_scores, make_context=sampled_context)
