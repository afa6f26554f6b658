"""Mult-DAE (Liang et al., WWW 2018): Mult-VAE's denoising twin, input dropout and a multinomial
likelihood without the KL term, [I -> 200 -> I] with a tanh code (`stjax/models/multvae.py`)."""

from __future__ import annotations

import ml_collections

from stjax.models.base import ModelSpec, config_keys
from stjax.models.multvae import CHECKS, _make, encode, example_scores, init, losses, score


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name="multdae", hidden=0, latent=200, dropout=0.5, beta_cap=0.0,
                                          anneal_steps=1))


SPEC = ModelSpec("multdae", default_config, _make(False), losses, score, batch_kind="bag", init=init, encode=encode,
                 config_checks=config_keys(CHECKS), example_scores=example_scores)
