"""What several models share: the item table, losses over the catalogue, next-item scoring and
the recurrent recommender. Not a model (the registry skips this file).

Scores and logits have W >= I+1 columns: column 0 is padding and columns above I are rows added
so the item table splits evenly over the `model` mesh axis; neither is ever a class.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from stjax.layers import RNN

Array = jax.Array


def item_embedding(rows: int, hidden: int, std: float = 0.02) -> nn.Embed:
    """The item table: N(0, std) rows with logical axes ('vocab', 'embed'), so the sharding rules
    can split it by rows. Row 0 is padding; `rows` comes from `DataInfo.table_rows`."""
    return nn.Embed(rows, hidden,
                    embedding_init=nn.with_logical_partitioning(nn.initializers.normal(std), ("vocab", "embed")))


class TiedItemOutput:
    """Mixin for modules with an `item_embedding` table: scores are dot products with it."""

    def logits(self, hidden):
        """hidden: float[..., D] -> float[..., W]."""
        return self.item_embedding.attend(hidden)

    def item_logits(self, hidden):
        """hidden: float[..., D] -> float[..., I]: `logits` over the real items only (column j is
        item j + 1). Slicing the table's rows 1..I first costs nothing; masking columns of the
        [..., W] result costs a pass over it, forward and backward."""
        table = self.item_embedding
        query, rows = table.promote_dtype(hidden, table.embedding[1: self.num_items + 1], dtype=table.dtype)
        return jnp.dot(query, rows.T)

    def embeddings(self):
        return self.item_embedding.embedding


def mask_non_items(logits: Array, num_items: int) -> Array:
    """-inf at padding item 0 and at the table's padding rows above `num_items`. logits: float[..., W]."""
    logits = logits.at[..., 0].set(-jnp.inf)
    if logits.shape[-1] > num_items + 1:  # static: free when the table is not padded
        columns = jnp.arange(logits.shape[-1])
        logits = jnp.where(columns > num_items, -jnp.inf, logits)
    return logits


def full_softmax_loss(logits: Array, targets: Array, weights: Array, num_items: int) -> tuple[Array, Array]:
    """Cross-entropy over the whole catalogue at every position with a target.

    logits: float[B, T, W]; targets: int32[B, T] (0 = no target); weights: float[B].
    Returns (mean loss over targets, number of targets). Columns 0 and above `num_items` are not
    classes (as if masked with -inf): the loss reads the columns 1..I (`item_softmax_loss`).
    """
    return item_softmax_loss(logits[..., 1: num_items + 1], targets, weights)


def item_softmax_loss(item_logits: Array, targets: Array, weights: Array) -> tuple[Array, Array]:
    """`full_softmax_loss` on logits over the real items only.

    item_logits: float[B, T, I] (column j is item j + 1, as `TiedItemOutput.item_logits` gives);
    targets: int32[B, T] in 0..I (0 = no target); weights: float[B].
    Returns (mean loss over targets, number of targets).
    """
    item_logits = item_logits.astype(jnp.float32)
    log_norm = jax.nn.logsumexp(item_logits, axis=-1)  # [B, T]
    # Target 0 (none) reads column 0 and is then weighted out: every logit is finite, so no inf * 0.
    target_logit = jnp.take_along_axis(item_logits, jnp.maximum(targets - 1, 0)[..., None], axis=-1)[..., 0]
    valid = (targets > 0) * weights[:, None]
    count = valid.sum()
    return jnp.sum((log_norm - target_logit) * valid) / jnp.maximum(count, 1.0), count


def sampled_bce_loss(hidden: Array, item_embeddings: Array, targets: Array, weights: Array, rng: Array,
                     num_items: int) -> tuple[Array, Array]:
    """SASRec's original loss: binary cross-entropy of the target vs one uniform negative.

    hidden: float[B, T, D]; item_embeddings: float[W, D]. Negatives are drawn from 1..I (never a
    padding row; a collision with the target is rare and, as in the paper, not re-drawn).
    """
    negatives = jax.random.randint(rng, targets.shape, 1, num_items + 1)
    positive = jnp.sum(hidden * item_embeddings[targets], -1).astype(jnp.float32)
    negative = jnp.sum(hidden * item_embeddings[negatives], -1).astype(jnp.float32)
    per_position = jax.nn.softplus(-positive) + jax.nn.softplus(negative)
    valid = (targets > 0) * weights[:, None]
    count = valid.sum()
    return jnp.sum(per_position * valid) / jnp.maximum(count, 1.0), count


def sequence_losses(module, variables, batch, *, rng, step, context, config):
    """Every left-to-right sequence model: CE over the catalogue at each position, or sampled BCE."""
    dropout_rng, negative_rng = jax.random.split(rng)
    hidden = module.apply(variables, batch["items"], batch["timestamps"], deterministic=False,
                          rngs={"dropout": dropout_rng})
    if config.get("loss", "ce") == "bce":
        table = module.apply(variables, method="embeddings")
        loss, count = sampled_bce_loss(hidden, table, batch["targets"], batch["weights"], negative_rng,
                                       module.num_items)
    elif isinstance(module, TiedItemOutput) and type(module).logits is TiedItemOutput.logits:
        item_logits = module.apply(variables, hidden, method="item_logits")  # [B, T, I]: no padding columns
        loss, count = item_softmax_loss(item_logits, batch["targets"], batch["weights"])
    else:
        logits = module.apply(variables, hidden, method="logits")
        loss, count = full_softmax_loss(logits, batch["targets"], batch["weights"], module.num_items)
    return {"model": loss}, {"targets": count}


def sequence_example_scores(module, variables, batch, *, context=None, config=None):
    """Per-example scores of the left-to-right sequence models: each row's summed cross-entropy
    over its targets and its number of targets, without dropout. sum(loss) / sum(targets) is the
    batch loss of `sequence_losses` with loss=ce (weights included); loss / targets is a user's mean
    surprise (anomaly scores). -> {"loss": float[B], "targets": float[B]}"""
    hidden = module.apply(variables, batch["items"], batch["timestamps"], deterministic=True)
    logits = module.apply(variables, hidden, method="logits")[..., 1: module.num_items + 1].astype(jnp.float32)
    targets = batch["targets"]
    log_norm = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, jnp.maximum(targets - 1, 0)[..., None], axis=-1)[..., 0]
    valid = (targets > 0) * batch["weights"][:, None]
    return {"loss": jnp.sum((log_norm - target_logit) * valid, axis=1), "targets": valid.sum(axis=1)}


def last_position_encode(module, variables, batch, *, context=None, scoring=None):
    """User vectors: the hidden state at the last (most recent) position. float[B, D].

    Models that accept `last_only` compute only that position's query in their last block.
    """
    kwargs = {"last_only": True} if getattr(module, "supports_last_only", False) else {}
    return module.apply(variables, batch["items"], batch["timestamps"], deterministic=True, **kwargs)[:, -1]


def last_position_score(module, variables, batch, *, context=None, scoring=None):
    """Scores of all items from the last position's hidden state. float[B, W]."""
    hidden = last_position_encode(module, variables, batch)
    return module.apply(variables, hidden, method="logits").astype(jnp.float32)


class RecurrentRecommender(TiedItemOutput, nn.Module):
    """GRU4Rec (Hidasi et al., ICLR 2016) in RecBole's full-softmax form, and its LSTM twin:
    item embeddings -> RNN -> projection, scored against the tied item table."""

    num_items: int
    max_length: int
    item_rows: int
    cell: str = "gru"
    hidden: int = 64
    state: int = 128
    num_layers: int = 1
    dropout: float = 0.3

    def setup(self):
        self.item_embedding = item_embedding(self.item_rows, self.hidden)
        self.rnn = RNN(cell=self.cell, hidden=self.state, num_layers=self.num_layers,
                       forget_bias=1.0 if self.cell == "lstm" else 0.0)
        self.projection = nn.Dense(self.hidden)
        self.input_dropout = nn.Dropout(self.dropout)

    def __call__(self, items, timestamps=None, deterministic: bool = True):
        """items: int32[B, T] (left-padded) -> float[B, T, D]."""
        padding = items > 0
        x = self.input_dropout(self.item_embedding(items), deterministic=deterministic)
        outputs, _ = self.rnn(x, padding, deterministic)
        return self.projection(outputs)


def make_recurrent(cell: str):
    def make(config, info):
        return RecurrentRecommender(num_items=info.num_items, max_length=info.max_length, item_rows=info.item_rows,
                                    cell=cell, hidden=config.hidden, state=config.state,
                                    num_layers=config.num_layers, dropout=config.dropout)

    return make
