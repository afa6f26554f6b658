"""Reference tests of every training loss against an independent NumPy computation.

Each reference loops over rows and positions in float64 and takes the log-normaliser as
max + log(sum(exp(x - max))) over the item columns 1..I only. Sizes are small and distinct:
batch B = 3, time T = 5, catalogue I = 11 (W = 12 columns, or W = 14 with padded table rows
above I), hidden D = 7. Covered: `full_softmax_loss`, `sampled_bce_loss`, `sequence_losses`
(SASRec, 'ce' and 'bce'), BERT4Rec's `cloze_losses` and the popularity model's `losses`.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stjax.models import DataInfo, bert4rec, popularity, sasrec
from stjax.models.shared import full_softmax_loss, sampled_bce_loss, sequence_losses

B, T, I, D = 3, 5, 11, 7  # noqa: E741  (I: the catalogue size, as in the docs)

# Full event sequences (length T + 1, left-padded) from which the training windows are cut as
# `stjax.data.batching.build_sequences` does: items = full[:, :-1], targets = the next item.
FULL = np.array([[3, 7, 1, 9, 4, 11],
                 [0, 0, 2, 5, 8, 10],
                 [6, 1, 2, 3, 4, 5]], dtype=np.int32)
WEIGHTS = np.array([1.0, 1.0, 0.0], dtype=np.float32)  # the last row is a padding row of the batch


def bound(losses, module, config):
    """losses(module, variables, batch, rng=...) as a function of (variables, batch, rng)."""
    return lambda variables, batch, rng: losses(module, variables, batch, rng=rng, step=0, context={},
                                                config=config)


def make_batch(full=FULL, weights=WEIGHTS):
    items = full[:, :-1]
    targets = np.where(items > 0, full[:, 1:], 0).astype(np.int32)
    return {"users": jnp.arange(1, len(full) + 1, dtype=jnp.int32),
            "items": jnp.asarray(items),
            "timestamps": jnp.asarray(np.where(items > 0, np.arange(T) * 100 + 1, 0).astype(np.int32)),
            "targets": jnp.asarray(targets),
            "weights": jnp.asarray(weights)}


# ---------------------------------------------------------------------------------------------
# NumPy references


def np_logsumexp(row):
    row = np.asarray(row, dtype=np.float64)
    top = np.max(row)
    return top + np.log(np.sum(np.exp(row - top)))


def np_softplus(x):
    x = float(x)
    return max(x, 0.0) + np.log1p(np.exp(-abs(x)))


def weighted_mean_over_targets(targets, weights, term):
    """sum over positions with target > 0 of weight * term(b, t, target), divided by the weights."""
    targets, weights = np.asarray(targets), np.asarray(weights, dtype=np.float64)
    total = count = 0.0
    for b in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            target = int(targets[b, t])
            if target > 0 and weights[b] > 0:
                total += weights[b] * term(b, t, target)
                count += weights[b]
    return total / max(count, 1.0), count


def reference_ce(logits, targets, weights, num_items):
    """Weighted mean over positions with target > 0 and weight > 0 of -log softmax over items 1..I."""
    logits = np.asarray(logits, dtype=np.float64)

    def term(b, t, target):
        items = logits[b, t, 1:num_items + 1]  # the classes: never column 0 or columns > I
        return np_logsumexp(items) - items[target - 1]

    return weighted_mean_over_targets(targets, weights, term)


def reference_bce(hidden, table, targets, negatives, weights):
    hidden, table = np.asarray(hidden, dtype=np.float64), np.asarray(table, dtype=np.float64)

    def term(b, t, target):
        positive = sum(hidden[b, t, d] * table[target, d] for d in range(hidden.shape[-1]))
        negative = sum(hidden[b, t, d] * table[int(negatives[b, t]), d] for d in range(hidden.shape[-1]))
        return np_softplus(-positive) + np_softplus(negative)

    return weighted_mean_over_targets(targets, weights, term)


def assert_loss(actual, expected, rtol=1e-5):
    (loss, count), (ref_loss, ref_count) = actual, expected
    np.testing.assert_allclose(float(count), ref_count, rtol=1e-6)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=rtol, atol=1e-6)


def random_logits(width, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(0, 2, (B, T, width)).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# full_softmax_loss


@pytest.mark.parametrize("width", [I + 1, I + 3])
def test_full_softmax_matches_reference(width):
    batch = make_batch()
    logits = random_logits(width)
    actual = full_softmax_loss(logits, batch["targets"], batch["weights"], I)
    expected = reference_ce(logits, batch["targets"], WEIGHTS, I)
    assert expected[1] == 8  # 5 + 3 targets in the two weighted rows
    assert_loss(actual, expected)


def test_full_softmax_excludes_padding_columns():
    """Column 0 and the padded rows above I are never classes: huge logits there change nothing."""
    batch = make_batch()
    logits = random_logits(I + 3, seed=1)
    base = full_softmax_loss(logits[..., :I + 1], batch["targets"], batch["weights"], I)
    huge = logits.at[..., 0].set(50.0).at[..., I + 1:].set(50.0)
    padded = full_softmax_loss(huge, batch["targets"], batch["weights"], I)
    np.testing.assert_allclose(float(padded[0]), float(base[0]), rtol=1e-6)
    assert float(padded[1]) == float(base[1])
    assert_loss(padded, reference_ce(logits, batch["targets"], WEIGHTS, I))


def test_full_softmax_ignores_unweighted_rows_and_missing_targets():
    batch = make_batch()
    logits = random_logits(I + 1, seed=2)
    base = full_softmax_loss(logits, batch["targets"], batch["weights"], I)
    # Garbage in the weight-0 row and at the target-0 positions of row 1 must not matter.
    changed = logits.at[2].set(100.0).at[1, :2].set(-100.0)
    other = full_softmax_loss(changed, batch["targets"], batch["weights"], I)
    np.testing.assert_allclose(float(other[0]), float(base[0]), rtol=1e-6)
    # Turning the last row's weight on adds its 5 targets.
    on = full_softmax_loss(logits, batch["targets"], jnp.ones(B), I)
    assert float(on[1]) == 13
    assert_loss(on, reference_ce(logits, batch["targets"], np.ones(B), I))


def test_full_softmax_fractional_weights_are_a_weighted_mean():
    batch = make_batch()
    weights = np.array([0.5, 2.0, 0.0], dtype=np.float32)
    logits = random_logits(I + 3, seed=3)
    actual = full_softmax_loss(logits, batch["targets"], jnp.asarray(weights), I)
    expected = reference_ce(logits, batch["targets"], weights, I)
    assert expected[1] == pytest.approx(0.5 * 5 + 2.0 * 3)
    assert_loss(actual, expected)


def test_full_softmax_no_targets_is_zero_not_nan():
    batch = make_batch()
    loss, count = full_softmax_loss(random_logits(I + 1), batch["targets"], jnp.zeros(B), I)
    assert float(count) == 0 and float(loss) == 0.0


def test_full_softmax_gradient_is_finite_and_exact():
    """d loss / d logits = w (softmax over 1..I - onehot) / count at valid positions, 0 elsewhere,
    although masked logits are -inf and target-0 positions pick column 0."""
    batch = make_batch()
    logits = random_logits(I + 3, seed=4)
    grad = jax.grad(lambda x: full_softmax_loss(x, batch["targets"], batch["weights"], I)[0])(logits)
    grad = np.asarray(grad)
    assert np.isfinite(grad).all()
    expected = np.zeros(grad.shape)
    count = sum(WEIGHTS[b] * (int(batch["targets"][b, t]) > 0) for b in range(B) for t in range(T))
    for b in range(B):
        for t in range(T):
            target = int(batch["targets"][b, t])
            if target <= 0 or WEIGHTS[b] <= 0:
                continue
            row = np.asarray(logits[b, t, 1:I + 1], dtype=np.float64)
            probs = np.exp(row - np_logsumexp(row))
            probs[target - 1] -= 1.0
            expected[b, t, 1:I + 1] = WEIGHTS[b] * probs / count
    np.testing.assert_allclose(grad, expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# sampled_bce_loss


def bce_inputs(width, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(0, 1, (B, T, D)).astype(np.float32)
    table = rng.normal(0, 1, (width, D)).astype(np.float32)
    return jnp.asarray(hidden), jnp.asarray(table)


@pytest.mark.parametrize("width", [I + 1, I + 3])
def test_sampled_bce_matches_reference(width):
    batch = make_batch()
    hidden, table = bce_inputs(width)
    rng = jax.random.key(7)
    negatives = np.asarray(jax.random.randint(rng, batch["targets"].shape, 1, I + 1))
    actual = sampled_bce_loss(hidden, table, batch["targets"], batch["weights"], rng, I)
    assert_loss(actual, reference_bce(hidden, table, np.asarray(batch["targets"]), negatives, WEIGHTS))


def test_sampled_bce_negatives_are_items():
    """Negatives come from 1..I: never padding row 0 nor a padded row above I. Those rows are
    given vectors that would add ~1000 to the loss if they were ever drawn."""
    rng = np.random.default_rng(5)
    shape = (64, 33)
    targets = jnp.asarray(rng.integers(1, I + 1, shape).astype(np.int32))
    weights = jnp.ones(shape[0])
    hidden = jnp.ones((*shape, D)) / D
    table = jnp.asarray(rng.normal(0, 0.1, (I + 3, D)).astype(np.float32))
    table = table.at[0].set(1000.0).at[I + 1:].set(1000.0)
    for seed in range(2):
        key = jax.random.key(seed)
        negatives = np.asarray(jax.random.randint(key, shape, 1, I + 1))
        assert negatives.min() >= 1 and negatives.max() <= I
        assert len(np.unique(negatives)) == I  # all items are drawn over 2112 positions
        loss, count = sampled_bce_loss(hidden, table, targets, weights, key, I)
        assert float(count) == shape[0] * shape[1]
        assert 0 < float(loss) < 2.0


def test_sampled_bce_determinism():
    batch = make_batch()
    hidden, table = bce_inputs(I + 3, seed=6)

    def loss(seed):
        return float(sampled_bce_loss(hidden, table, batch["targets"], batch["weights"], jax.random.key(seed), I)[0])

    assert loss(1) == loss(1)
    assert loss(1) != loss(2)


# ---------------------------------------------------------------------------------------------
# SASRec: sequence_losses


@functools.cache
def initialise(module, init):
    """Variables from the model's own init, once per module (eager init is the slow part here)."""
    return init(module, jax.random.key(0), make_batch(), context={})


def sasrec_setup(loss):
    config = sasrec.default_config()
    config.update(dict(hidden=8, num_blocks=1, num_heads=2, dropout=0.0, attention_dropout=0.0, loss=loss))
    info = DataInfo(num_users=4, num_items=I, max_length=T, item_shards=7)  # 14 table rows
    module = sasrec.make(config, info)  # `loss` is not a field of the module: both share one init
    batch = make_batch()
    return config, module, initialise(module, sasrec.SPEC.init), batch


def sasrec_forward(module, variables, batch):
    """Hidden states and logits of the deterministic model (dropout is 0 anyway)."""
    def forward(variables, items, timestamps):
        hidden = module.apply(variables, items, timestamps, deterministic=True)
        return hidden, module.apply(variables, hidden, method="logits"), module.apply(variables, method="embeddings")

    return forward(variables, batch["items"], batch["timestamps"])


def test_sasrec_ce_is_full_softmax_of_its_logits():
    config, module, variables, batch = sasrec_setup("ce")
    losses, aux = bound(sequence_losses, module, config)(variables, batch, jax.random.key(3))
    _, logits, _ = sasrec_forward(module, variables, batch)
    assert logits.shape == (B, T, 14)
    direct = full_softmax_loss(logits, batch["targets"], batch["weights"], I)
    np.testing.assert_allclose(float(losses["model"]), float(direct[0]), rtol=1e-6)
    assert_loss((losses["model"], aux["targets"]), reference_ce(logits, batch["targets"], WEIGHTS, I))


def test_sasrec_bce_is_sampled_bce_with_the_split_rng():
    config, module, variables, batch = sasrec_setup("bce")
    rng = jax.random.key(3)
    loss_fn = bound(sequence_losses, module, config)
    losses, aux = loss_fn(variables, batch, rng)
    _, negative_rng = jax.random.split(rng)
    hidden, _, table = sasrec_forward(module, variables, batch)
    direct = sampled_bce_loss(hidden, table, batch["targets"], batch["weights"], negative_rng, I)
    np.testing.assert_allclose(float(losses["model"]), float(direct[0]), rtol=1e-6)
    negatives = np.asarray(jax.random.randint(negative_rng, (B, T), 1, I + 1))
    expected = reference_bce(hidden, table, np.asarray(batch["targets"]), negatives, WEIGHTS)
    assert_loss((losses["model"], aux["targets"]), expected)
    assert float(loss_fn(variables, batch, rng)[0]["model"]) == float(losses["model"])
    assert float(loss_fn(variables, batch, jax.random.key(4))[0]["model"]) != float(losses["model"])


# ---------------------------------------------------------------------------------------------
# BERT4Rec: cloze_losses


def bert4rec_setup(item_shards=1, mask_probability=0.3):
    config = bert4rec.default_config()
    config.update(dict(hidden=8, num_blocks=1, num_heads=2, dropout=0.0, mask_probability=mask_probability))
    info = DataInfo(num_users=4, num_items=I, max_length=T, item_shards=item_shards)
    module = bert4rec.make(config, info)
    return config, module, initialise(module, bert4rec.cloze_init), make_batch()


def reference_cloze(module, variables, rng, mask_probability, weights=WEIGHTS):
    """The masked sequence rebuilt independently of the code (from the full events), the same
    mask draw, then the CE over items 1..I at the masked positions."""
    mask_rng, _ = jax.random.split(rng)
    draw = np.asarray(jax.random.bernoulli(mask_rng, mask_probability, (B, T)))
    sequence = FULL[:, 1:]  # the window's inputs shifted by one plus the final target
    inputs = sequence.copy()
    targets = np.zeros_like(sequence)
    for b in range(B):
        for t in range(T):
            if sequence[b, t] > 0 and (draw[b, t] or t == T - 1):  # the last real item always
                inputs[b, t] = I + 1  # [mask]
                targets[b, t] = sequence[b, t]

    def forward(variables, inputs):
        return module.apply(variables, module.apply(variables, inputs, deterministic=True), method="logits")

    logits = forward(variables, jnp.asarray(inputs))
    return reference_ce(logits, targets, weights, I), targets, logits.shape


@pytest.mark.parametrize("item_shards, width", [(1, I + 2), (7, I + 3)])
def test_cloze_matches_reference(item_shards, width):
    config, module, variables, batch = bert4rec_setup(item_shards)
    loss_fn = bound(bert4rec.cloze_losses, module, config)
    for seed in (0, 1):
        rng = jax.random.key(seed)
        losses, aux = loss_fn(variables, batch, rng)
        expected, targets, shape = reference_cloze(module, variables, rng, 0.3)
        assert shape == (B, T, width)
        assert (targets[:2, -1] == FULL[:2, -1]).all()  # the next item is always a cloze target
        assert_loss((losses["model"], aux["targets"]), expected)


def test_cloze_mask_token_column_is_not_a_class():
    """A huge output bias on [mask] (column I+1) and on padded rows leaves the loss unchanged."""
    config, module, variables, batch = bert4rec_setup(item_shards=7)
    loss_fn = bound(bert4rec.cloze_losses, module, config)
    rng = jax.random.key(5)
    base = loss_fn(variables, batch, rng)[0]["model"]
    params = nn.meta.unbox(variables)["params"]
    params = dict(params, output_bias=params["output_bias"].at[0].set(50.0).at[I + 1:].set(50.0))
    biased = loss_fn({"params": params}, batch, rng)[0]["model"]
    np.testing.assert_allclose(float(biased), float(base), rtol=1e-6)


def test_cloze_without_random_masks_trains_the_last_position_only():
    config, module, variables, batch = bert4rec_setup(mask_probability=0.0)
    losses, aux = bound(bert4rec.cloze_losses, module, config)(variables, batch, jax.random.key(0))
    expected, targets, _ = reference_cloze(module, variables, jax.random.key(0), 0.0)
    assert (targets[:, :-1] == 0).all() and float(aux["targets"]) == 2
    assert_loss((losses["model"], aux["targets"]), expected)


def test_cloze_determinism_and_finite_gradient():
    config, module, variables, batch = bert4rec_setup()
    loss_fn = bound(bert4rec.cloze_losses, module, config)

    def loss(params, rng):
        return loss_fn({"params": params}, batch, rng)[0]["model"]

    params = nn.meta.unbox(variables)["params"]
    jitted = jax.jit(jax.value_and_grad(loss))
    value, grads = jitted(params, jax.random.key(1))
    # Determinism: the same function on the same key twice gives identical bits, jitted or eager.
    assert float(jitted(params, jax.random.key(1))[0]) == float(value)
    eager = float(loss(params, jax.random.key(1)))
    assert eager == float(loss(params, jax.random.key(1)))
    # Jit against eager: XLA may fuse and reassociate differently per CPU, so only within rtol.
    np.testing.assert_allclose(float(value), eager, rtol=1e-6)
    # Another key masks other positions: a different loss, by more than the tolerance.
    assert abs(float(loss(params, jax.random.key(2))) - float(value)) > 1e-4 * abs(float(value))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))


# ---------------------------------------------------------------------------------------------
# Popularity


def test_popularity_loss_is_ce_of_softmax_of_the_bias():
    info = DataInfo(num_users=4, num_items=I, max_length=T, item_shards=7)  # 14 bias entries
    module = popularity.make(popularity.default_config(), info)
    batch = make_batch()
    variables = nn.meta.unbox(popularity.SPEC.init(module, jax.random.key(0), batch, context={}))
    bias = np.random.default_rng(8).normal(0, 1.5, info.item_rows).astype(np.float32)
    bias[0] = bias[I + 1:] = 50.0  # never classes
    variables = {"params": {"item_bias": jnp.asarray(bias)}}
    losses, aux = popularity.losses(module, variables, batch, rng=jax.random.key(0), step=0, context={},
                                    config=popularity.default_config())
    normaliser = np_logsumexp(bias[1:I + 1])
    terms = [(normaliser - float(bias[target])) for b in range(B) if WEIGHTS[b] > 0
             for target in np.asarray(batch["targets"][b]) if target > 0]
    assert float(aux["targets"]) == len(terms) == 8
    np.testing.assert_allclose(float(losses["model"]), np.mean(terms), rtol=1e-5)
