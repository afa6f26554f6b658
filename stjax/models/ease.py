"""EASE (Steck, WWW 2019): a linear item-item model in closed form, the baseline a generative
recommender must beat under the held-out-users protocol.

With X the binary user x item matrix of the training users, G = X^T X + l2 I and P = G^{-1},
the weights are B = I - P diag(1 / diag(P)) (so diag(B) = 0) and a user's scores are x B,
x the multi-hot of their (folded-in) items. B is computed once from the training bags in
`make_context` (float64 on the host, stored float32 in the run's context.npz); there is nothing to
learn, so a run takes one no-op step (`trainable=False`) and `model.l2` is chosen on validation
by running the grid (`scripts/tune_ease.py`).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from stjax.models.base import ModelSpec, config_keys, number


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name="ease", l2=500.0))


def ease_weights(bags: np.ndarray, num_items: int, l2: float, rows: int | None = None) -> np.ndarray:
    """B float32[rows, rows] (rows >= I + 1, row/column 0 and the padding rows zero) from the
    training bags int32[U, L] (0 = padding)."""
    x = np.zeros((len(bags), num_items + 1), np.float64)
    users = np.repeat(np.arange(len(bags)), bags.shape[1])
    x[users, bags.ravel()] = 1.0
    x = x[:, 1:]  # [U, I]
    gram = x.T @ x
    gram[np.diag_indices(num_items)] += l2
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)[None, :]
    weights[np.diag_indices(num_items)] = 0.0
    rows = rows or num_items + 1
    out = np.zeros((rows, rows), np.float32)
    out[1:num_items + 1, 1:num_items + 1] = weights
    return out


class EASE(nn.Module):
    """Scores = multi-hot(bag) @ B; one parameter (a scale, kept at 1) so the engine has a state."""

    num_items: int
    item_rows: int

    @nn.compact
    def __call__(self, bag, weights):
        scale = self.param("scale", nn.initializers.ones, ())
        rows = jnp.arange(bag.shape[0])[:, None]
        multi_hot = jnp.zeros((bag.shape[0], self.item_rows), weights.dtype).at[rows, bag].set(1.0).at[:, 0].set(0.0)
        return scale * (multi_hot @ weights)


def make(config, info) -> nn.Module:
    return EASE(num_items=info.num_items, item_rows=info.item_rows)


def make_context(prepared, info, config):
    if prepared.bags is None:
        raise ValueError("ease reads the training users' bags (batch kind 'bag')")
    return {"weights": ease_weights(prepared.bags["bag"], info.num_items, float(config.model.l2), info.item_rows)}


def init(module, rng, batch, *, context):
    weights = context.get("weights", jnp.zeros((module.item_rows, module.item_rows), jnp.float32))
    return module.init(rng, batch["bag"], weights)


def losses(module, variables, batch, *, rng, step, context, config):
    """Nothing to learn: zero (the closed form is in the context)."""
    return {"model": 0.0 * variables["params"]["scale"]}, {"targets": batch["weights"].sum()}


def score(module, variables, batch, *, context, scoring):
    return module.apply(variables, batch["bag"], context["weights"])


SPEC = ModelSpec("ease", default_config, make, losses, score, batch_kind="bag", init=init,
                 make_context=make_context, trainable=False,
                 config_checks=config_keys({"l2": number(0.0, low_open=True)}))
