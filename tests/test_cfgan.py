"""CFGAN: both players' losses (ZR and PM included) against NumPy, the negative sampling against a
loop, the direction each player's step moves the game, groups that touch only their own
parameters on their own period, and the tiny experiments end to end (held-out users and
leave-one-out)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax.linen import meta

from stjax.config import ConfigError, load_config
from stjax.models.cfgan import CFGAN, cfgan_losses, default_config, losses, sample_negatives
from stjax.models.multvae import multi_hot
from stjax.train import train_and_evaluate
from stjax.train.build import build_run
from stjax.train.state import make_train_step, param_labels

ROOT = Path(__file__).resolve().parents[1]
ITEMS = 11


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _toy(generator_layers=1, discriminator_layers=2, seed=0):
    """A module over 11 items, its parameters, and a batch of 3 users (the last one padding)."""
    module = CFGAN(num_items=ITEMS, item_rows=ITEMS + 2, generator_hidden=5, generator_layers=generator_layers,
                   discriminator_hidden=7, discriminator_layers=discriminator_layers)
    bag = jnp.asarray([[3, 1, 7, 0], [2, 9, 11, 5], [0, 0, 0, 0]], jnp.int32)
    params = meta.unbox(module.init(jax.random.key(seed), bag))["params"]
    weights = jnp.asarray([1.0, 1.0, 0.0])
    return module, params, bag, weights


def _numpy_players(params, purchases, weights, zr_mask, pm_mask, config):
    """Both losses written out in float64: G = sigmoid MLP, D = leaky-ReLU MLP on [c, r]."""
    p = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), params)
    g_layers = sorted(p["generator"]["trunk"], key=lambda name: int(name.split("_")[1]))
    h = purchases
    for name in g_layers:
        h = h @ p["generator"]["trunk"][name]["kernel"] + p["generator"]["trunk"][name]["bias"]
        h = _sigmoid(h)  # sigmoid between layers and at the output
    r_hat = h

    def discriminator(vectors):
        x = np.concatenate([purchases, vectors], axis=1)
        d = p["discriminator"]
        for name in sorted((k for k in d if k.startswith("dense_")), key=lambda n: int(n.split("_")[1])):
            x = x @ d[name]["kernel"] + d[name]["bias"]
            x = np.where(x > 0, x, 0.2 * x)
        return (x @ d["logit"]["kernel"] + d["logit"]["bias"])[:, 0]

    real = discriminator(purchases)
    fake = discriminator(r_hat * (purchases + pm_mask))
    users = weights.sum()
    if config.gan_loss == "hinge":
        d_rows = np.maximum(0, 1 - real) + np.maximum(0, 1 + fake)
        g_rows = -fake
    else:
        d_rows = _softplus(-real) + _softplus(fake)
        g_rows = _softplus(-fake)
    zr = ((zr_mask * r_hat ** 2).sum(axis=1) * weights).sum() / users

    def squares(tree):
        return sum((leaf ** 2).sum() for leaf in jax.tree_util.tree_leaves(tree))

    d_loss = (d_rows * weights).sum() / users + config.discriminator_l2 * 0.5 * squares(p["discriminator"])
    g_loss = (g_rows * weights).sum() / users + config.zr_weight * zr + config.generator_l2 * 0.5 * squares(
        p["generator"])
    return d_loss, g_loss, zr, r_hat


@pytest.mark.parametrize("gan_loss", ["non_saturating", "hinge"])
def test_both_losses_equal_numpy_with_the_step_masks(gan_loss):
    module, params, bag, weights = _toy()
    config = default_config()
    config.update(dict(zr_ratio=0.6, pm_ratio=0.4, zr_weight=0.3, generator_l2=0.01, discriminator_l2=0.02,
                       gan_loss=gan_loss))
    rng = jax.random.key(5)
    got, aux = losses(module, {"params": params}, {"bag": bag, "weights": weights}, rng=rng, step=0, context={},
                      config=config)
    # The masks the step draws, rebuilt from its two keys and the rule "unbought and uniform < ratio".
    purchases = np.zeros((3, ITEMS + 1))
    for row, items in enumerate(np.asarray(bag)):
        for item in items:
            if item:
                purchases[row, item] = 1.0
    purchases = purchases[:, 1:]
    zr_key, pm_key = jax.random.split(rng)
    zr_mask = ((np.asarray(jax.random.uniform(zr_key, purchases.shape)) < 0.6) & (purchases == 0)) * 1.0
    pm_mask = ((np.asarray(jax.random.uniform(pm_key, purchases.shape)) < 0.4) & (purchases == 0)) * 1.0
    assert zr_mask[:2].sum() > 0 and pm_mask[:2].sum() > 0 and (zr_mask != pm_mask).any()
    d_loss, g_loss, zr, _ = _numpy_players(params, purchases, np.asarray(weights, np.float64), zr_mask, pm_mask,
                                           config)
    np.testing.assert_allclose(float(got["discriminator"]), d_loss, rtol=1e-5)
    np.testing.assert_allclose(float(got["generator"]), g_loss, rtol=1e-5)
    np.testing.assert_allclose(float(aux["zero_reconstruction"]), zr, rtol=1e-5)
    assert float(aux["targets"]) == 2.0


def test_padding_rows_and_unseen_masks_change_nothing():
    """A padding row's vectors and the masks on purchased items never enter a loss."""
    module, params, bag, weights = _toy()
    config = default_config()
    purchases = multi_hot(bag, ITEMS)
    rng = np.random.default_rng(0)
    zr_mask = jnp.asarray((rng.random((3, ITEMS)) < 0.5) * (np.asarray(purchases) == 0), jnp.float32)
    pm_mask = jnp.asarray((rng.random((3, ITEMS)) < 0.5) * (np.asarray(purchases) == 0), jnp.float32)
    base, _ = cfgan_losses(module, params, purchases, weights, zr_mask, pm_mask, config)
    noisy = purchases.at[2].set(1.0)
    other_zr, other_pm = zr_mask.at[2].set(1.0), pm_mask.at[2].set(0.0)
    moved, _ = cfgan_losses(module, params, noisy, weights, other_zr, other_pm, config)
    for group in base:
        np.testing.assert_allclose(float(moved[group]), float(base[group]), rtol=1e-6)


def test_negative_sampling_against_a_loop():
    key = jax.random.key(11)
    rng = np.random.default_rng(1)
    purchases = (rng.random((5, 13)) < 0.3).astype(np.float32)
    mask = np.asarray(sample_negatives(key, jnp.asarray(purchases), 0.6))
    uniforms = np.asarray(jax.random.uniform(key, purchases.shape))
    expected = np.zeros_like(purchases)
    for user in range(purchases.shape[0]):
        for item in range(purchases.shape[1]):
            if purchases[user, item] == 0 and uniforms[user, item] < 0.6:
                expected[user, item] = 1.0
    np.testing.assert_array_equal(mask, expected)
    # On many users: never a purchased item, about `ratio` of the others; ratio 0 and 1 are exact.
    purchases = (rng.random((300, 400)) < 0.1).astype(np.float32)
    mask = np.asarray(sample_negatives(key, jnp.asarray(purchases), 0.7))
    assert (mask * purchases).sum() == 0
    assert abs(mask.sum() / (purchases == 0).sum() - 0.7) < 0.005
    np.testing.assert_array_equal(np.asarray(sample_negatives(key, jnp.asarray(purchases), 0.0)), 0.0)
    np.testing.assert_array_equal(np.asarray(sample_negatives(key, jnp.asarray(purchases), 1.0)), 1.0 - purchases)


def _sgd_step(params, grads, group, rate):
    moved = dict(params)
    moved[group] = jax.tree_util.tree_map(lambda p, g: p - rate * g, params[group], grads[group])
    return moved


def test_each_players_step_moves_the_game_its_way():
    """On fixed masks: a step of D down its loss's gradient lowers D's loss; a step of G lowers G's
    loss and raises D's (G's vectors look more real to the same D)."""
    module, params, bag, weights = _toy()
    config = default_config()
    # Without ZR (zr_weight=0 below) G's loss is the adversarial term alone, which must raise D's.
    config.generator_l2 = config.discriminator_l2 = 0.0
    purchases = multi_hot(bag, ITEMS)
    zr_mask = sample_negatives(jax.random.key(1), purchases, 0.5)
    pm_mask = sample_negatives(jax.random.key(2), purchases, 0.5)

    def game(p, zr_weight=0.0):
        config.zr_weight = zr_weight
        return cfgan_losses(module, p, purchases, weights, zr_mask, pm_mask, config)[0]

    evaluate = jax.jit(game)
    gradient = jax.jit(jax.grad(lambda p, group, zr_weight=0.0: game(p, zr_weight)[group]), static_argnums=(1, 2))
    before = evaluate(params)
    d_params = _sgd_step(params, gradient(params, "discriminator"), "discriminator", 0.05)
    after_d = evaluate(d_params)
    assert float(after_d["discriminator"]) < float(before["discriminator"])
    g_params = _sgd_step(params, gradient(params, "generator"), "generator", 0.5)
    after_g = evaluate(g_params)
    assert float(after_g["generator"]) < float(before["generator"])
    assert float(after_g["discriminator"]) > float(before["discriminator"])
    # ZR alone pulls the sampled negatives toward 0.
    zr_params = _sgd_step(params, gradient(params, "generator", 1.0), "generator", 0.5)
    r_hat = [np.asarray(module.apply({"params": p}, purchases, method="generate")) for p in (params, zr_params)]
    negatives = np.asarray(zr_mask[:2]) > 0
    assert (r_hat[1][:2][negatives] ** 2).sum() < (r_hat[0][:2][negatives] ** 2).sum()


def _engine(every: dict, extra=()):
    overrides = ["--config.train.warmup_steps=0", "--config.train.clip_norm=0.0"]
    overrides += [f"--config.train.groups.{group}.every={k}" for group, k in every.items()]
    config = load_config(str(ROOT / "experiments" / "cfgan_ml1m.py") + ":tiny", overrides + list(extra))
    run = build_run(config, log=lambda m: None)
    return run, make_train_step(run.spec, run.module, run.tx, run.config.model, 0, run.shardings)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def _same(before, after, group):
    return all(np.array_equal(a, b) for a, b in zip(_leaves(before[group]), _leaves(after[group])))


def test_each_group_updates_only_its_own_parameters_on_its_period():
    run, step = _engine({"generator": 1, "discriminator": 3})
    labels = jax.tree_util.tree_leaves_with_path(param_labels(run.spec, run.state.params))
    assert {tuple(str(k.key) for k in path)[0] + ":" + label for path, label in labels} == {
        "generator:generator", "discriminator:discriminator"}
    state, history = run.state, [jax.device_get(run.state.params)]
    for number in range(6):
        batch = jax.device_put(run.iterator.batch(0, number % run.iterator.steps_per_epoch), run.shardings.batch)
        state, metrics = step(state, batch, run.context)
        assert np.isfinite(float(metrics["loss/generator"])) and np.isfinite(float(metrics["loss/discriminator"]))
        history.append(jax.device_get(state.params))
    for number in range(1, 7):  # D's update is the last of each period of 3
        before, after = history[number - 1], history[number]
        assert not _same(before, after, "generator"), number
        assert _same(before, after, "discriminator") == (number % 3 != 0), number


def test_a_discriminator_alone_wins_and_a_generator_alone_fools_it():
    """Through the engine's step on one batch: with G frozen (its period longer than the run) D's
    loss falls; with D frozen, G's falls and D's rises."""
    for frozen, learner in (("generator", "discriminator"), ("discriminator", "generator")):
        run, step = _engine({frozen: 1000}, ["--config.model.zr_weight=0.0"])
        batch = jax.device_put(run.iterator.batch(0, 0), run.shardings.batch)
        state, trace = run.state, []
        for _ in range(15):
            state, metrics = step(state, batch, run.context)
            trace.append({key: float(value) for key, value in metrics.items() if key.startswith("loss/")})
        assert trace[-1][f"loss/{learner}"] < trace[0][f"loss/{learner}"], trace
        if learner == "generator":
            assert trace[-1]["loss/discriminator"] > trace[0]["loss/discriminator"], trace


@pytest.mark.parametrize("variant", ["tiny", "tiny_loo"])
def test_the_tiny_experiments_train_and_rank(variant, tmp_path):
    config = load_config(str(ROOT / "experiments" / "cfgan_ml100k.py") + f":{variant}",
                         ["--config.train.num_epochs=2"])
    assert config.data.split == ("held_out_users" if variant == "tiny" else "leave_one_out")
    results = train_and_evaluate(config, tmp_path / "run", log=lambda m: None, progress=False)
    metric = config.eval.metric
    assert 0.0 < results["test"][metric] <= 1.0 and 0.0 < results["valid"][metric] <= 1.0


def test_a_bad_setting_is_refused():
    with pytest.raises(ConfigError, match="model.gan_loss"):
        load_config(str(ROOT / "experiments" / "cfgan_ml1m.py") + ":tiny", ["--config.model.gan_loss=wasserstein"])
    with pytest.raises(ConfigError, match="model.zr_ratio"):
        load_config(str(ROOT / "experiments" / "cfgan_ml1m.py") + ":tiny", ["--config.model.zr_ratio=1.5"])


def test_default_config_keys_are_the_checked_ones():
    from stjax.models.cfgan import CHECKS

    assert set(default_config().keys()) - {"name"} == set(CHECKS)
    assert isinstance(default_config(), ml_collections.ConfigDict)
