"""Engine v2: one loop for every model family. A two-group (generator / discriminator) model on
(user, item) pairs and the README's bag-of-items model train and evaluate through the same
`train_and_evaluate`; per-group gradients and update periods; multi-target and fold-in examples."""

import json
import re
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stjax.config import base_config, check_complete, tiny
from stjax.data import make_log, make_split, preprocess
from stjax.data.batching import build_sequences, fold_in_examples, relative_times
from stjax.models import ModelSpec, register
from stjax.models.shared import full_softmax_loss, item_embedding, mask_non_items
from stjax.train import train_and_evaluate
from stjax.train.loop import build_run
from stjax.train.state import _group_gradients, make_train_step

README = Path(__file__).resolve().parents[1] / "README.md"


# ----------------------------------------------------------------------------- a two-group model


class Generator(nn.Module):
    num_users: int
    item_rows: int
    hidden: int

    @nn.compact
    def __call__(self, users):
        user = nn.Embed(self.num_users + 1, self.hidden)(users)  # [B, D]
        table = item_embedding(self.item_rows, self.hidden)
        return user, table.attend(user), table.embedding  # [B, D], [B, W], [W, D]


class Critic(nn.Module):
    @nn.compact
    def __call__(self, user, item):
        return nn.Dense(1)(jnp.tanh(nn.Dense(8)(jnp.concatenate([user, item], -1))))[:, 0]


class AdversarialMF(nn.Module):
    num_users: int
    num_items: int
    item_rows: int
    hidden: int = 16

    def setup(self):
        self.generator = Generator(self.num_users, self.item_rows, self.hidden)
        self.discriminator = Critic()

    def __call__(self, users, items):
        user, scores, table = self.generator(users)
        fake = jax.nn.softmax(mask_non_items(scores, self.num_items)) @ table  # [B, D], differentiable
        return scores, self.discriminator(user, table[items]), self.discriminator(user, fake)


def adversarial_losses(module, variables, batch, *, rng, step, context, config):
    scores, real, fake = module.apply(variables, batch["users"], batch["items"])
    weights = batch["weights"]
    ce, count = full_softmax_loss(scores[:, None], batch["items"][:, None], weights, module.num_items)
    mean = lambda x: jnp.sum(x * weights) / jnp.maximum(weights.sum(), 1.0)  # noqa: E731
    generator = ce + 0.1 * mean(jax.nn.softplus(-fake))
    discriminator = mean(jax.nn.softplus(-real) + jax.nn.softplus(fake))
    return {"generator": generator, "discriminator": discriminator}, {"targets": count, "critic_real": mean(real)}


ADVERSARIAL = register(ModelSpec(
    name="adversarial_mf", batch_kind="pairs", groups=("generator", "discriminator"), losses=adversarial_losses,
    default_config=lambda: ml_collections.ConfigDict(dict(name="adversarial_mf", hidden=16)),
    make=lambda config, info: AdversarialMF(info.num_users, info.num_items, info.item_rows, config.hidden),
    init=lambda module, rng, batch, *, context: module.init(rng, batch["users"], batch["items"]),
    score=lambda module, variables, batch, *, context, scoring: module.apply(
        variables, batch["users"], batch["users"] * 0)[0]))


def _adversarial_config(**groups):
    config = tiny(base_config("adversarial_mf"))
    config.train.num_epochs = 2
    config.train.batch_size = 64
    for group, settings in groups.items():
        for key, value in settings.items():
            config.train.groups[group][key] = value
    return config


def test_each_group_gets_the_gradient_of_its_own_loss():
    run = build_run(_adversarial_config(), log=lambda m: None)
    batch = jax.device_put(run.iterator.batch(0, 0), run.shardings.batch)
    rng = jax.random.key(1)

    def loss_fn(params):
        return adversarial_losses(run.module, {"params": params}, batch, rng=rng, step=0, context={}, config=None)

    _, aux, grads = _group_gradients(run.spec, loss_fn, run.state.params)
    assert set(aux) == {"targets", "critic_real"}
    for group in ("generator", "discriminator"):
        alone = jax.grad(lambda p, g=group: loss_fn(p)[0][g])(run.state.params)[group]
        for a, b in zip(jax.tree_util.tree_leaves(grads[group]), jax.tree_util.tree_leaves(alone)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    # The generator loss also reaches the critic's parameters; the critic must not take that gradient.
    leak = jax.grad(lambda p: loss_fn(p)[0]["generator"])(run.state.params)["discriminator"]
    assert any(float(jnp.abs(x).max()) > 0 for x in jax.tree_util.tree_leaves(leak))


def test_group_update_periods_and_learning_rates():
    """generator.every=3: k=3 discriminator steps per generator step; the critic's own learning rate."""
    config = _adversarial_config(generator={"every": 3}, discriminator={"learning_rate": 0.05})
    config.train.warmup_steps = 0  # a warm-up starts at learning rate 0: the first update would not move
    run = build_run(config, log=lambda m: None)
    step = make_train_step(run.spec, run.module, run.tx, run.config.model, 0, run.shardings)
    state = run.state
    copy = lambda tree: jax.tree_util.tree_map(np.asarray, jax.device_get(tree))  # noqa: E731
    history = [copy(state.params)]
    for index in range(6):
        state, metrics = step(state, jax.device_put(run.iterator.batch(0, index % 2), run.shardings.batch), {})
        history.append(copy(state.params))
    assert {"loss", "loss/generator", "loss/discriminator", "grad_norm", "targets", "critic_real"} <= set(metrics)

    def changed(before, after, group):
        return any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(before[group]),
                                                              jax.tree_util.tree_leaves(after[group])))

    assert [changed(history[i], history[i + 1], "generator") for i in range(6)] == [False, False, True] * 2
    assert all(changed(history[i], history[i + 1], "discriminator") for i in range(6))
    # Adam's first step moves each parameter by about its group's learning rate (0.05 vs 5e-3).
    critic = np.abs(history[1]["discriminator"]["Dense_0"]["bias"] - history[0]["discriminator"]["Dense_0"]["bias"])
    table = np.abs(history[3]["generator"]["Embed_1"]["embedding"] - history[2]["generator"]["Embed_1"]["embedding"])
    np.testing.assert_allclose(critic.max(), 0.05, rtol=0.05)
    np.testing.assert_allclose(table.max(), 5e-3, rtol=0.05)


def test_two_group_model_trains_and_evaluates_through_the_loop(tmp_path):
    results = train_and_evaluate(_adversarial_config(), tmp_path, log=lambda m: None, progress=False)
    assert results["timings"]["train_step_compiles"] == 1
    assert 0.0 <= results["test"]["ndcg@10"] <= 1.0 and results["test"]["num_users"] > 0
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_lines = [line for line in lines if "eval" not in line]
    assert {"loss/generator", "loss/discriminator", "critic_real", "grad_norm"} <= set(train_lines[0])
    assert train_lines[-1]["loss/generator"] < train_lines[0]["loss/generator"]


# ----------------------------------------------------------------------------- the README's bag model


def _readme_model():
    match = re.search(r"<!-- model-example -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert match, "the model example block is missing from the README"
    namespace: dict = {}
    exec(compile(match.group(1), "README.md", "exec"), namespace)
    return namespace["SPEC"]


def test_readme_bag_model_trains_with_fold_in_on_held_out_users(tmp_path):
    spec = _readme_model()
    assert spec.batch_kind == "bag"
    config = tiny(base_config(spec.name))
    config.data.split = "held_out_users"
    config.eval.evaluators = ("fold_in",)
    config.train.num_epochs = 30
    config.train.learning_rate = 1e-2
    config.train.eval_every_epochs = 10
    check_complete(config)
    results = train_and_evaluate(config, tmp_path, log=lambda m: None, progress=False)
    assert list(results["protocols"]) == ["fold_in"]
    assert results["protocols"]["fold_in"].startswith("fold_in: full ranking, up to ")
    test = results["test"]
    assert test["num_users"] == round(64 * 0.1)
    # The synthetic users have planted tastes: a trained bag model beats popularity-free chance.
    assert test["recall@20"] > 20 / 50
    assert test["capped_recall@20"] >= test["recall@20"]


def test_ranking_evaluator_is_refused_on_held_out_users():
    from stjax.config import ConfigError

    config = tiny(base_config("sasrec"))
    config.data.split = "held_out_users"
    with pytest.raises(ConfigError, match="'ranking' does not apply to data.split=held_out_users"):
        build_run(config, log=lambda m: None)


# ----------------------------------------------------------------------------- examples with several targets


def _log():
    #          user a: 6 events             user b: 4 events
    users = ["a"] * 6 + ["b"] * 4
    items = ["x", "y", "z", "y", "w", "v", "x", "z", "q", "q"]
    times = [10, 20, 30, 40, 50, 60, 15, 25, 35, 45]
    return preprocess(make_log(users, items, times))


def test_temporal_split_gives_every_distinct_target_item_of_a_user():
    log = _log()
    split = make_split(log, "temporal", valid_start=40, test_start=50)
    data = build_sequences(split, max_length=3)
    token = {t: i for i, t in enumerate(log.item_vocab.tokens.tolist())}
    # a: test events w(50), v(60); history before 50 = x y z y. b: no test event.
    np.testing.assert_array_equal(data.test["targets"], [[token["w"], token["v"]]])
    np.testing.assert_array_equal(data.test["items"], [[token["y"], token["z"], token["y"]]])
    assert sorted(set(data.test["exclude"][0].tolist()) - {0}) == sorted([token["x"], token["y"], token["z"]])
    # valid: a has y(40); b has q(45) twice? only once in valid (35 is train) -> one target each.
    assert data.valid["targets"].shape == (2, 2) and (data.valid["targets"][:, 1] == 0).all()


def test_fold_in_takes_80_percent_of_each_held_out_user_as_input():
    rng = np.random.default_rng(0)
    users = np.repeat([f"u{i}" for i in range(6)], [5, 10, 7, 2, 12, 9])
    items = [f"i{v}" for v in rng.permutation(200)[:len(users)]]  # distinct items
    log = preprocess(make_log(users.tolist(), items, list(range(len(users)))))
    times, _ = relative_times(log)
    held = np.isin(log.user, [1, 2, 3, 4, 5, 6])
    examples = fold_in_examples(log, held, times, max_length=20, fraction=0.8, seed=3)
    again = fold_in_examples(log, held, times, max_length=20, fraction=0.8, seed=3)
    for key in examples:
        if key != "about":
            np.testing.assert_array_equal(examples[key], again[key])
    for key in examples["about"]:
        np.testing.assert_array_equal(examples["about"][key], again["about"][key])
    counts = np.bincount(log.user)[examples["users"]]
    inputs = (examples["items"] > 0).sum(1)
    np.testing.assert_array_equal(inputs, np.minimum(np.ceil(0.8 * counts), counts - 1))
    np.testing.assert_array_equal((examples["targets"] > 0).sum(1), counts - inputs)
    for row in range(len(examples["users"])):
        history = set(examples["items"][row].tolist()) - {0}
        targets = set(examples["targets"][row].tolist()) - {0}
        assert not history & targets
        assert history | targets == set(log.item[log.user == examples["users"][row]].tolist())
        # Input events keep their time order.
        real = examples["timestamps"][row][examples["items"][row] > 0]
        assert (np.diff(real) > 0).all()


# ----------------------------------------------------------------------------- every key is reachable


def test_train_maps_the_columns_of_a_users_own_csv(tmp_path):
    """data.columns, data.seed and the split fractions are config keys: `stjax train` reads a CSV
    with its own column names."""
    from click.testing import CliRunner

    from stjax.cli import main

    rng = np.random.default_rng(0)
    rows = ["uid,iid,ts"] + [f"u{u},i{rng.integers(30)},{1_600_000_000 + 60 * t}"
                             for u in range(40) for t in range(12)]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    experiment = str(Path(__file__).resolve().parents[1] / "experiments" / "sasrec_synthetic.py") + ":tiny"
    args = ["train", "--config", experiment, "--workdir", str(tmp_path / "run"), "--no-progress",
            f"--config.data.source={tmp_path / 'log.csv'}", "--config.data.format=csv",
            "--config.data.columns=user=uid,item=iid,timestamp=ts", "--config.train.num_epochs=1",
            "--config.data.split=temporal", "--config.data.test_fraction=0.2", "--config.data.max_targets=3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["protocols"] == {"ranking": "ranking: full ranking, up to 3 targets per user"}
    assert results["config"]["data"]["columns"] == "user=uid,item=iid,timestamp=ts"
    bad = CliRunner().invoke(main, args[:-4] + ["--config.data.columns=user:uid", "--workdir", str(tmp_path / "b")])
    assert bad.exit_code == 2
    assert "data.columns: expected ROLE=COLUMN pairs separated by commas, found 'user:uid'" in bad.output
