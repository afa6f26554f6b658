"""What several models share: the item table, losses over the catalogue (full softmax, sampled
BCE, sampled softmax with the logQ correction and its negative samplers), next-item scoring and
the recurrent recommender. Not a model (the registry skips this file).

Scores and logits have W >= I+1 columns: column 0 is padding and columns above I are rows added
so the item table splits evenly over the `model` mesh axis; neither is ever a class.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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


# ----------------------------------------------------------------------------- sampled softmax

SAMPLERS = ("log_uniform", "uniform", "popularity")
LOG_UNIFORM_PARTS = 256  # ids below this are their own bucket; each octave above is cut into this many
POPULARITY_KEY = "popularity_cumulative"  # the context array of the popularity sampler


@functools.lru_cache(maxsize=16)
def log_uniform_buckets(num_items: int, parts: int = LOG_UNIFORM_PARTS) -> tuple[np.ndarray, ...]:
    """The log-uniform (Zipfian) sampler over items 1..I as buckets of consecutive ids.

    The exact log-uniform law is Q(i) = log((i + 1) / i) / log(I + 1) (TensorFlow's
    `log_uniform_candidate_sampler`, shifted so that id 1 is the most likely). Drawn in float32 as
    floor(exp(u log(I + 1))), ids above ~2^19 would be reachable only every few ids (a float32
    uniform u has 23 random bits), so the sampler draws a bucket, then an id uniformly inside it:
    ids below `parts` are buckets of one id; each octave [2^k, 2^(k+1)) above is cut into `parts`
    equal buckets, whose mass is the exact log-uniform mass of the bucket. Inside a bucket the law
    is flat instead of falling by at most 1/parts; `log_q` is the probability of this sampler, so
    the correction is exact. Meant for catalogues whose ids are ranked by popularity (1 = most
    popular); stjax's own item ids are not, which is what the 'popularity' sampler is for.

    Returns (starts int32[N], widths int32[N], cdf float32[N], log_q float32[N]): bucket n holds the
    ids starts[n] .. starts[n] + widths[n] - 1, each with log-probability log_q[n]; cdf is the
    cumulative bucket mass (cdf[-1] = 1). N is about parts * (1 + log2(I / parts)): 6,000 for 1e9.
    """
    top = num_items + 1
    edges = [np.arange(1, parts, dtype=np.int64)]
    start = parts
    while start < top:
        edges.append(start + np.arange(parts, dtype=np.int64) * (start // parts))
        start *= 2
    edges = np.unique(np.minimum(np.concatenate(edges + [np.asarray([top])]), top))
    low, high = edges[:-1], edges[1:]
    mass = (np.log(high) - np.log(low)) / np.log(top)  # float64; sums to 1
    cdf = np.cumsum(mass)
    cdf[-1] = 1.0
    out = (low.astype(np.int32), (high - low).astype(np.int32), cdf.astype(np.float32),
           (np.log(mass) - np.log(high - low)).astype(np.float32))
    for array in out:
        array.flags.writeable = False
    return out


def popularity_cumulative(targets: np.ndarray, num_items: int, rows: int) -> np.ndarray:
    """The popularity sampler's context array: int32[W] cumulative sampling weights, where item i
    weighs (its count among the training `targets`) + 1, so that every item can be drawn; row 0 and
    the table's padding rows above I weigh 0. Q(i) = (cumulative[i] - cumulative[i-1]) / cumulative[-1].

    targets: int[...] item ids (0 = none). Raises ValueError when the total weight (events + I) does
    not fit in int32 (2^31 - 1): use the log_uniform or uniform sampler then."""
    counts = np.bincount(np.asarray(targets).ravel(), minlength=rows).astype(np.int64)[:rows]
    weights = np.zeros(rows, np.int64)
    weights[1: num_items + 1] = counts[1: num_items + 1] + 1
    cumulative = np.cumsum(weights)
    if cumulative[-1] > np.iinfo(np.int32).max:
        raise ValueError(f"model.sampler='popularity': {int(cumulative[-1])} training targets + items exceed "
                         f"int32; use model.sampler='log_uniform' or 'uniform'")
    return cumulative.astype(np.int32)


def draw_negatives(rng: Array, num_sampled: int, num_items: int, sampler: str, context=None) -> Array:
    """`num_sampled` item ids int32[S] in 1..I, drawn with replacement from `sampler`'s Q (never item 0
    nor a padding row above I). context: the run's context (`POPULARITY_KEY` for 'popularity')."""
    if sampler == "uniform":
        return jax.random.randint(rng, (num_sampled,), 1, num_items + 1)
    if sampler == "log_uniform":
        starts, widths, cdf, _ = (jnp.asarray(a) for a in log_uniform_buckets(num_items))
        bucket_rng, offset_rng = jax.random.split(rng)
        bucket = jnp.minimum(jnp.searchsorted(cdf, jax.random.uniform(bucket_rng, (num_sampled,)), side="right"),
                             len(cdf) - 1)
        return starts[bucket] + jax.random.randint(offset_rng, (num_sampled,), 0, widths[bucket])
    if sampler == "popularity":
        cumulative = context[POPULARITY_KEY]  # int32[W]
        draws = jax.random.randint(rng, (num_sampled,), 0, cumulative[-1])
        return jnp.searchsorted(cumulative, draws, side="right").astype(jnp.int32)
    raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")


def sampling_log_q(items: Array, num_items: int, sampler: str, context=None) -> Array:
    """log Q(item) float32[...] of `draw_negatives`' law at items int32[...] in 1..I (finite at 0)."""
    if sampler == "uniform":
        return jnp.full(items.shape, -np.log(num_items), jnp.float32)
    if sampler == "log_uniform":
        starts, _, _, log_q = (jnp.asarray(a) for a in log_uniform_buckets(num_items))
        bucket = jnp.clip(jnp.searchsorted(starts, items, side="right") - 1, 0, len(starts) - 1)
        return log_q[bucket]
    if sampler == "popularity":
        cumulative = context[POPULARITY_KEY]
        weight = cumulative[items] - cumulative[jnp.maximum(items - 1, 0)]
        return (jnp.log(jnp.maximum(weight, 1).astype(jnp.float32))
                - jnp.log(cumulative[-1].astype(jnp.float32)))
    raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")


def sampled_softmax_loss(hidden: Array, item_embeddings: Array, targets: Array, weights: Array, negatives: Array,
                         target_log_q: Array, negative_log_q: Array) -> tuple[Array, Array]:
    """Sampled softmax with the logQ correction, negatives shared by the whole batch.

    At a position with hidden state h and target y, with S negatives n_1..n_S drawn from Q:
        o_j  = h . e_j - log Q(j)                     (the corrected logit of candidate j)
        loss = -o_y + log( exp(o_y) + sum_{s: n_s != y} exp(o_{n_s}) )
    i.e. cross-entropy over {y} and the negatives, an accidental hit (n_s = y) masked out. Taking
    log Q rather than log(S Q(j)), the expected count, changes nothing: the shift is common to every
    candidate. Subtracting log Q makes the sampled normaliser an estimate of the full one, so the
    gradient approaches the full softmax's as S grows (Bengio & Senecal, IEEE TNN 2008, importance
    sampling; Jean et al., ACL 2015, "On using very large target vocabulary"; Yi et al., RecSys 2019,
    "Sampling-bias-corrected neural modeling", the same correction for a recommender's negatives).
    The mask leaves the target in its normaliser once rather than about S Q(y) times: as S grows the
    gradient tends to the full softmax's divided by 1 - p(y), the same direction
    (tests/test_large_catalogue.py checks the direction).
    Only the rows of the targets and the negatives are gathered (`item_embeddings[ids]`): the table
    may be row-sharded and no [B, T, I] array is formed.

    hidden: float[B, T, D]; item_embeddings: float[W, D]; targets: int32[B, T] (0 = no target);
    weights: float[B]; negatives: int32[S] in 1..I; target_log_q: float[B, T], log Q of the targets;
    negative_log_q: float[S]. Returns (mean loss over targets, number of targets).
    """
    target_logit = jnp.sum(hidden * item_embeddings[targets], -1).astype(jnp.float32) - target_log_q  # [B, T]
    negative_logits = jnp.einsum("btd,sd->bts", hidden, item_embeddings[negatives]).astype(jnp.float32)
    negative_logits = negative_logits - negative_log_q  # [B, T, S]
    negative_logits = jnp.where(negatives == targets[..., None], -jnp.inf, negative_logits)
    # The target joins the candidates, so each row has a finite entry (no logsumexp of all -inf).
    candidates = jnp.concatenate([target_logit[..., None], negative_logits], axis=-1)  # [B, T, 1 + S]
    per_position = jax.nn.logsumexp(candidates, axis=-1) - target_logit
    valid = (targets > 0) * weights[:, None]
    count = valid.sum()
    return jnp.sum(per_position * valid) / jnp.maximum(count, 1.0), count


def sampled_context(prepared, info, config) -> dict:
    """`make_context` of the left-to-right sequence models: the popularity sampler's cumulative
    weights int32[W] (`popularity_cumulative`, from the training targets) with loss=sampled and
    sampler=popularity; otherwise no context."""
    model = config.model
    if model.get("loss") == "sampled" and model.get("sampler") == "popularity":
        targets = prepared.sequences.train["targets"]
        return {POPULARITY_KEY: popularity_cumulative(targets, info.num_items, info.item_rows)}
    return {}


def sequence_losses(module, variables, batch, *, rng, step, context, config):
    """Every left-to-right sequence model: `config.loss` 'ce' (cross-entropy over the catalogue at
    each position), 'bce' (sampled BCE) or 'sampled' (`sampled_softmax_loss`: `config.num_sampled`
    negatives per batch from `config.sampler`, drawn here from the step's rng)."""
    dropout_rng, negative_rng = jax.random.split(rng)
    hidden = module.apply(variables, batch["items"], batch["timestamps"], deterministic=False,
                          rngs={"dropout": dropout_rng})
    loss_name = config.get("loss", "ce")
    if loss_name == "bce":
        table = module.apply(variables, method="embeddings")
        loss, count = sampled_bce_loss(hidden, table, batch["targets"], batch["weights"], negative_rng,
                                       module.num_items)
    elif loss_name == "sampled":
        table = module.apply(variables, method="embeddings")
        sampler = config.get("sampler", "uniform")
        negatives = draw_negatives(negative_rng, int(config.get("num_sampled", 1024)), module.num_items, sampler,
                                   context)
        loss, count = sampled_softmax_loss(
            hidden, table, batch["targets"], batch["weights"], negatives,
            sampling_log_q(batch["targets"], module.num_items, sampler, context),
            sampling_log_q(negatives, module.num_items, sampler, context))
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
