"""GRU4Rec (Hidasi et al., ICLR 2016), in the full-softmax form used by RecBole: item
embeddings -> GRU -> projection, scored against the (tied) item embeddings."""

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
    return ml_collections.ConfigDict(dict(name="gru4rec", hidden=64, state=128, num_layers=1, dropout=0.3, loss="ce",
                                      num_sampled=1024, sampler="uniform"))


SPEC = ModelSpec("gru4rec", default_config, make_recurrent("gru"), sequence_losses, last_position_score,
                 encode=last_position_encode,
                 example_scores=sequence_example_scores, make_context=sampled_context)
