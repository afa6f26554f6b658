"""The one model interface and shared pieces (losses over the catalogue, the registry).

A model is a `ModelSpec`: its default config, a factory for its Flax module, a loss on a
training batch and a score over ALL items for an evaluation batch. Batches are dicts of
arrays with the fields of `stjax.data.SequenceBatch` / `EvalBatch`. Item 0 is padding: it
is never a class and its score is -inf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """name; default_config() -> ConfigDict; make(config, num_items, max_length) -> nn.Module;
    loss(module, params, batch, rng, config) -> (scalar, aux dict); score(module, params, batch) -> float[B, I+1]."""

    name: str
    default_config: Callable[[], ml_collections.ConfigDict]
    make: Callable[..., nn.Module]
    loss: Callable
    score: Callable
    trainable: bool = True


REGISTRY: dict[str, ModelSpec] = {}


def item_embedding(rows: int, hidden: int) -> nn.Embed:
    """The item table every model shares: N(0, 0.02) rows, logical axes ('vocab', 'embed') so the
    distributed work can shard it by rows. Row 0 is padding (BERT4Rec adds a mask row at the end)."""
    return nn.Embed(rows, hidden,
                    embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed")))


class TiedItemOutput:
    """Mixin for modules with an `item_embedding` table: scores are dot products with it."""

    def logits(self, hidden):
        """hidden: float[..., D] -> float[..., I+1]."""
        return self.item_embedding.attend(hidden)

    def embeddings(self):
        return self.item_embedding.embedding


def register(spec: ModelSpec) -> ModelSpec:
    REGISTRY[spec.name] = spec
    return spec


def mask_padding_logits(logits: Array) -> Array:
    """Item 0 (padding) can never be predicted."""
    return logits.at[..., 0].set(-jnp.inf)


def full_softmax_loss(logits: Array, targets: Array, weights: Array) -> tuple[Array, Array]:
    """Cross-entropy over the whole catalogue at every position with a target.

    logits: float[B, T, I+1]; targets: int32[B, T] (0 = no target); weights: float[B].
    Returns (mean loss over targets, number of targets).
    """
    logits = mask_padding_logits(logits.astype(jnp.float32))
    log_norm = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    valid = (targets > 0) * weights[:, None]
    # Padding targets (0) have logit -inf: mask before multiplying so that no inf * 0 appears.
    per_position = jnp.where(valid > 0, log_norm - target_logit, 0.0)
    count = valid.sum()
    return jnp.sum(per_position * valid) / jnp.maximum(count, 1.0), count


def sampled_bce_loss(hidden: Array, item_embeddings: Array, targets: Array, weights: Array, rng: Array,
                     num_items: int) -> tuple[Array, Array]:
    """SASRec's original loss: binary cross-entropy of the target vs one uniform negative.

    hidden: float[B, T, D]; item_embeddings: float[I+1, D]. Negatives are drawn from 1..I
    (a collision with the target is rare and, as in the paper, not re-drawn).
    """
    negatives = jax.random.randint(rng, targets.shape, 1, num_items + 1)
    positive = jnp.sum(hidden * item_embeddings[targets], -1).astype(jnp.float32)
    negative = jnp.sum(hidden * item_embeddings[negatives], -1).astype(jnp.float32)
    per_position = jax.nn.softplus(-positive) + jax.nn.softplus(negative)
    valid = (targets > 0) * weights[:, None]
    count = valid.sum()
    return jnp.sum(per_position * valid) / jnp.maximum(count, 1.0), count


def get(name: str) -> ModelSpec:
    from stjax import models  # noqa: F401  (registers every model)

    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]
