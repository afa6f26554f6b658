"""SVAE: the next-k targets against a loop over the raw windows, the ELBO against NumPy from the same
forward pass, the KL annealing through the train step, a tiny run that learns, and scores and user
vectors at the last step's posterior mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stjax.config import base_config, tiny
from stjax.models import REGISTRY
from stjax.models.svae import next_k_targets
from stjax.train.build import build_run
from stjax.train.state import make_train_step

SPEC = REGISTRY["svae"]


@pytest.fixture(scope="module")
def tiny_run():
    """One tiny synthetic run for the file (building it is most of a test's time); tests take a
    copy of its state and clone its module for other settings (parameters do not depend on them)."""
    config = tiny(base_config("svae"))
    config.model.update(dict(dropout=0.0, mlp_hidden=13, latent=7, anneal_steps=100, beta_cap=0.3))
    config.train.learning_rate = 2e-2
    return config, build_run(config, log=lambda m: None)


def _variant(tiny_run, **model):
    """(model config, module, fresh state) with `model` keys changed."""
    config, run = tiny_run
    model_config = config.model.copy_and_resolve_references()
    model_config.update(model)
    module = run.module.clone(**{k: v for k, v in model.items() if k in ("next_k", "dropout")})
    return model_config, module, jax.tree_util.tree_map(jnp.copy, run.state)


def _batch(run, step=0):
    return {k: jnp.asarray(v) for k, v in run.iterator.batch(0, step).items()}


def _loop_next_k(items, last_target, k):
    """out[b, t] = the k items after position t in the window items[b] + [last target], by a loop."""
    rows, time = items.shape
    out = np.zeros((rows, time, k), np.int32)
    for b in range(rows):
        window = list(items[b]) + [last_target[b]]
        for t in range(time):
            if window[t] == 0:
                continue
            following = window[t + 1: t + 1 + k]
            out[b, t, :len(following)] = following
    return out


@pytest.mark.parametrize("k", [1, 3, 20])
def test_next_k_targets_equal_a_loop_over_the_window(tiny_run, k):
    _, run = tiny_run
    batch = run.iterator.batch(0, 0)
    items, targets = batch["items"], batch["targets"]
    assert (items[:, 0] == 0).any() and (items[:, 0] > 0).any()  # short and full windows both present
    expected = _loop_next_k(items, targets[:, -1], k)
    np.testing.assert_array_equal(np.asarray(next_k_targets(jnp.asarray(targets), k)), expected)


def test_next_k_targets_hand_case():
    # A left-padded window [0, 0, 5, 6, 7] whose next event is 9: targets [0, 0, 6, 7, 9].
    targets = jnp.asarray([[0, 0, 6, 7, 9]])
    np.testing.assert_array_equal(np.asarray(next_k_targets(targets, 2))[0],
                                  [[0, 0], [0, 0], [6, 7], [7, 9], [9, 0]])


def _numpy_elbo(logits, mean, log_variance, targets, weights, k, beta):
    """-ELBO per step from dense next-k counts: sum_i x_i log softmax_i, Gaussian KL, averaged over steps."""
    rows, time, num_items = logits.shape
    counts = np.zeros((rows, time, num_items))
    for b in range(rows):
        for t in range(time):
            for j in range(k):
                if targets[b, t] > 0 and t + j < time:
                    counts[b, t, targets[b, t + j] - 1] += 1.0
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -(counts * log_softmax).sum(-1)
    kl = 0.5 * (np.exp(log_variance) + mean**2 - 1.0 - log_variance).sum(-1)
    steps = (targets > 0) * weights[:, None]
    return ((nll + beta * kl) * steps).sum() / steps.sum(), (nll * steps).sum() / (counts.sum(-1) * steps).sum()


@pytest.mark.parametrize("k, step", [(1, 30), (3, 30), (3, 500)])
def test_loss_is_the_next_k_multinomial_nll_plus_annealed_kl(tiny_run, k, step):
    _, run = tiny_run
    model_config, module, state = _variant(tiny_run, next_k=k)
    batch = _batch(run)
    batch["weights"] = batch["weights"].at[2].set(0.0)  # a padding row counts nothing
    variables = {"params": state.params}
    rng = jax.random.key(5)
    losses, aux = SPEC.losses(module, variables, batch, rng=rng, step=step, context={}, config=model_config)
    dropout_rng, latent_rng = jax.random.split(rng)
    logits, mean, log_variance = module.apply(variables, batch["items"], deterministic=False,
                                              rngs={"dropout": dropout_rng, "latent": latent_rng})
    assert logits.shape == (*batch["items"].shape, run.info.num_items)
    beta = min(0.3, step / 100)
    expected, nll = _numpy_elbo(np.asarray(logits, np.float64), np.asarray(mean, np.float64),
                                np.asarray(log_variance, np.float64), np.asarray(batch["targets"]),
                                np.asarray(batch["weights"], np.float64), k, beta)
    np.testing.assert_allclose(float(losses["model"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(aux["nll"]), nll, rtol=1e-5)
    np.testing.assert_allclose(float(aux["beta"]), beta, rtol=1e-6)
    # The decoder reads a sample: at the mean (deterministic) the logits differ.
    at_mean, _, _ = module.apply(variables, batch["items"])
    assert not np.allclose(np.asarray(at_mean), np.asarray(logits))


def _train(tiny_run, steps, **model):
    """Runs `steps` train steps over the tiny run's epochs; -> the metrics of each step (floats)."""
    _, run = tiny_run
    model_config, module, state = _variant(tiny_run, **model)
    step = make_train_step(run.spec, module, run.tx, model_config, 0, run.shardings)
    history = []
    for index in range(steps):
        epoch, position = divmod(index, run.iterator.steps_per_epoch)
        state, metrics = step(state, jax.device_put(run.iterator.batch(epoch, position), run.shardings.batch),
                              run.context)
        history.append(metrics)
    return [{key: float(value) for key, value in metrics.items()} for metrics in jax.device_get(history)]


@pytest.fixture(scope="module")
def trained(tiny_run):
    """4 epochs of the tiny run with next_k 2, dropout and beta = min(0.5, step / 20): one compile
    serves both tests below."""
    return _train(tiny_run, 4 * tiny_run[1].iterator.steps_per_epoch, next_k=2, dropout=0.2, anneal_steps=20,
                  beta_cap=0.5)


def test_kl_annealing_follows_the_schedule_through_the_train_step(trained):
    np.testing.assert_allclose([m["beta"] for m in trained], [min(0.5, s / 20) for s in range(len(trained))],
                               rtol=1e-6)
    assert trained[-1]["beta"] == 0.5
    assert all(np.isfinite(m["kl"]) and m["kl"] >= 0.0 for m in trained)


def test_tiny_training_lowers_the_loss(tiny_run, trained):
    per_epoch = tiny_run[1].iterator.steps_per_epoch
    nll = [np.mean([m["nll"] for m in trained[e * per_epoch:(e + 1) * per_epoch]]) for e in range(4)]
    assert nll[-1] < nll[0] - 0.1 and nll == sorted(nll, reverse=True), nll


def test_scores_and_vectors_are_the_last_steps_posterior_mean(tiny_run):
    _, run = tiny_run
    batch = {k: jnp.asarray(v[:5]) for k, v in run.prepared.sequences.test.items()}
    variables = {"params": run.state.params}
    scores = np.asarray(SPEC.score(run.module, variables, batch))
    vectors = np.asarray(SPEC.encode(run.module, variables, batch))
    logits, mean, _ = run.module.apply(variables, batch["items"])  # the whole window, at the means
    assert scores.shape == (5, run.info.item_rows) and vectors.shape == (5, 7)
    np.testing.assert_allclose(vectors, np.asarray(mean)[:, -1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[:, 1:run.info.num_items + 1], np.asarray(logits)[:, -1], rtol=1e-5, atol=1e-5)
    # More left padding changes nothing: the GRU's carry is frozen on padded steps.
    padded = np.pad(np.asarray(batch["items"]), ((0, 0), (4, 0)))
    again = np.asarray(SPEC.score(run.module, variables, {"items": jnp.asarray(padded)}))
    np.testing.assert_allclose(again, scores, rtol=1e-5, atol=1e-5)


def test_example_scores_equal_numpy_at_the_means(tiny_run):
    _, run = tiny_run
    model_config, module, state = _variant(tiny_run, next_k=3)
    batch = _batch(run, 1)
    batch["weights"] = batch["weights"].at[3].set(0.0)
    variables = {"params": state.params}
    scores = SPEC.example_scores(module, variables, batch, config=model_config)
    logits, mean, log_variance = (np.asarray(a, np.float64) for a in module.apply(variables, batch["items"]))
    targets, weights = np.asarray(batch["targets"]), np.asarray(batch["weights"], np.float64)
    for row in (0, 5):
        loss, _ = _numpy_elbo(logits[row:row + 1], mean[row:row + 1], log_variance[row:row + 1],
                              targets[row:row + 1], weights[row:row + 1], 3, 0.0)
        steps = (targets[row] > 0).sum()
        np.testing.assert_allclose(float(scores["loss"][row]), loss * steps, rtol=1e-5, atol=1e-6)
    expected_targets = (_loop_next_k(np.asarray(batch["items"]), targets[:, -1], 3) > 0).sum((1, 2)) * weights
    np.testing.assert_array_equal(np.asarray(scores["targets"]), expected_targets)
    assert float(scores["loss"][3]) == 0.0 and float(scores["kl"][3]) == 0.0
