"""The engine's owners (issue 20): evaluators with a direction drive early stopping and the best
checkpoint, per-example scores add up to the batch loss, parameter groups may differ in optimizer
type and schedule, a skipped group runs no update, and every batch kind has one record."""

from contextlib import closing

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stjax.config import base_config, tiny
from stjax.data.kinds import KINDS, sample_batch
from stjax.eval import evaluator as evaluation
from stjax.models import REGISTRY
from stjax.train import train_and_evaluate
from stjax.train.loop import build_run
from stjax.train.state import every_k_steps, group_optimizer

# ----------------------------------------------------------------------------- directions


class Scripted:
    """An evaluator whose validation 'surprise' follows a script (one value per evaluation)."""

    def __init__(self, setup, script):
        self.name, self.description, self.script, self.calls = "scripted", "scripted: a fixed sequence", script, 0
        self.step = jax.jit(lambda x: x)

    def evaluate(self, params, part, context, scoring):
        if part != "valid":
            return {"surprise": -1.0}
        value = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return {"surprise": value}


SCRIPT = [5.0, 4.0, 3.0, 3.5, 4.5, 6.0, 7.0, 8.0]


@pytest.fixture
def scripted():
    def register(lower):
        evaluation.register_evaluator(evaluation.EvaluatorSpec(
            "scripted", lambda setup: Scripted(setup, SCRIPT), ("leave_one_out",), lambda config: ("surprise",),
            lower_is_better=lambda name: lower))
    yield register
    evaluation.EVALUATORS.pop("scripted", None)


@pytest.mark.parametrize("lower, best_eval, stopped_after", [(True, 3, 5), (False, 1, 3)])
def test_the_metric_direction_drives_early_stopping_and_the_best_step(tmp_path, scripted, lower, best_eval,
                                                                      stopped_after):
    scripted(lower)
    config = tiny(base_config("sasrec"))
    config.eval.evaluators = ("ranking", "scripted")
    config.eval.metric = "scripted/surprise"
    config.train.num_epochs = 8
    config.train.eval_every_epochs = 1
    config.train.patience = 2
    results = train_and_evaluate(config, tmp_path, log=lambda m: None, progress=False)
    per_epoch = results["steps"] // stopped_after
    assert results["stopped_early"] and results["steps"] == stopped_after * per_epoch
    assert results["best_step"] == best_eval * per_epoch  # lower: 3.0 at the 3rd; higher: 5.0 at the 1st
    # The checkpoint kept as best is that step (Orbax ranks in the metric's direction).
    from stjax.runs import RunFolder

    with closing(RunFolder(tmp_path).checkpoints(async_save=False)) as checkpoints:
        assert checkpoints.best_step() == best_eval * per_epoch


def test_eval_metric_is_any_metric_an_evaluator_reports(scripted):
    from stjax.config import ConfigError
    from stjax.validation import validate

    scripted(True)
    config = tiny(base_config("sasrec"))
    config.eval.evaluators = ("ranking", "scripted")
    config.eval.metric = "scripted/surprise"
    validate(config)
    config.eval.metric = "scripted/other"
    with pytest.raises(ConfigError, match="config key 'eval.metric': found 'scripted/other'"):
        validate(config)
    names = evaluation.metric_names(config.eval)
    assert names["scripted/surprise"] == ("scripted", True) and names["ndcg@10"] == ("ranking", False)


# ----------------------------------------------------------------------------- per-example scores


@pytest.mark.parametrize("name", ["sasrec", "tisasrec", "gru4rec", "lstm"])
def test_per_example_scores_sum_to_the_batch_loss(name):
    config = tiny(base_config(name))
    for key in ("dropout", "attention_dropout"):
        if key in config.model:
            config.model[key] = 0.0
    run = build_run(config, log=lambda m: None)
    spec = REGISTRY[name]
    batch = {k: jnp.asarray(v) for k, v in run.iterator.batch(0, 1).items()}
    batch["weights"] = batch["weights"].at[3].set(0.0)  # a padding row counts nothing
    variables = {"params": run.state.params}
    losses, aux = spec.losses(run.module, variables, batch, rng=jax.random.key(0), step=0, context={},
                              config=config.model)
    scores = spec.example_scores(run.module, variables, batch, context={}, config=config.model)
    assert scores["loss"].shape == scores["targets"].shape == (config.train.batch_size,)
    assert float(scores["targets"][3]) == 0.0 and float(scores["loss"][3]) == 0.0
    np.testing.assert_allclose(float(scores["targets"].sum()), float(aux["targets"]))
    np.testing.assert_allclose(float(scores["loss"].sum() / scores["targets"].sum()), float(losses["model"]),
                               rtol=1e-5)
    # Written another way: NumPy's cross-entropy of each row from the model's own logits.
    hidden = run.module.apply(variables, batch["items"], batch["timestamps"], deterministic=True)
    logits = np.asarray(run.module.apply(variables, hidden, method="logits"), np.float64)[..., 1:run.info.num_items + 1]
    targets = np.asarray(batch["targets"])
    row = 5
    expected = sum(np.log(np.exp(logits[row, t] - logits[row, t].max()).sum()) + logits[row, t].max()
                   - logits[row, t, targets[row, t] - 1] for t in range(targets.shape[1]) if targets[row, t] > 0)
    np.testing.assert_allclose(float(scores["loss"][row]), expected, rtol=1e-4)


# ----------------------------------------------------------------------------- parameter groups


def test_groups_may_differ_in_optimizer_type_and_schedule():
    config = tiny(base_config("sasrec")).train
    config.warmup_steps = 0
    config.weight_decay = 0.5
    config.groups.model.optimizer = "adamw"
    config.groups.model.schedule = "constant"
    params = {"w": jnp.linspace(-1.0, 1.0, 6)}
    grads = {"w": jnp.linspace(0.3, -0.2, 6)}
    ours = group_optimizer(config, "model", total_steps=100)
    reference = optax.chain(optax.clip_by_global_norm(float(config.clip_norm)),
                            optax.adamw(float(config.learning_rate), b1=0.9, b2=0.98, weight_decay=0.5))
    state, ref_state = ours.init(params), reference.init(params)
    for _ in range(3):
        update, state = ours.update(grads, state, params)
        expected, ref_state = reference.update(grads, ref_state, params)
        np.testing.assert_allclose(np.asarray(update["w"]), np.asarray(expected["w"]), rtol=1e-6)
    # The same group with the train section's cosine schedule and plain adam moves differently.
    config.groups.model.optimizer, config.groups.model.schedule = "", ""
    other = group_optimizer(config, "model", total_steps=100)
    update, _ = other.update(grads, other.init(params), params)
    first, _ = ours.update(grads, ours.init(params), params)
    assert not np.allclose(np.asarray(update["w"]), np.asarray(first["w"]))


def test_a_skipped_group_runs_no_update():
    counted = {"calls": 0}

    def counting_update(updates, state, params=None):
        counted["calls"] += 1  # traced once per branch that contains it
        return jax.tree_util.tree_map(lambda g: -0.1 * g, updates), state + 1

    inner = optax.GradientTransformation(lambda params: jnp.zeros([], jnp.int32), counting_update)
    tx = every_k_steps(inner, 3)
    params = {"w": jnp.ones(4)}
    state = tx.init(params)
    step = jax.jit(tx.update)
    text = str(jax.make_jaxpr(tx.update)({"w": jnp.ones(4)}, state, params))
    assert "cond[" in text  # a real branch: the skipped steps do not compute and discard the update
    moved = []
    for _ in range(6):
        update, state = step({"w": jnp.ones(4)}, state, params)
        moved.append(bool(np.any(np.asarray(update["w"]) != 0)))
    assert moved == [False, False, True] * 2 and int(state.inner) == 2


# ----------------------------------------------------------------------------- batch kinds


def test_every_kind_has_one_record_and_every_model_names_one():
    assert set(KINDS) == {"sequence", "bag", "pairs", "series", "temporal_neighbours"}
    assert {spec.batch_kind for spec in REGISTRY.values()} <= set(KINDS)
    sequence = sample_batch("sequence", 4, 7)
    assert sequence["items"].shape == (4, 7) and sequence["weights"].shape == (4,)
    assert sample_batch("bag", 4, 7, max_bag=3)["bag"].shape == (4, 3)
    assert sample_batch("pairs", 4, 7, num_negatives=2)["negatives"].shape == (4, 2)
    series = sample_batch("series", 4, 28, horizon=7)
    assert series["inputs"].shape == (4, 28) and series["targets"].shape == series["target_times"].shape == (4, 7)
    with pytest.raises(ValueError, match="no sample batch for batch kind 'temporal_neighbours'"):
        sample_batch("temporal_neighbours", 4, 7)
    assert KINDS["pairs"].known_users_only and KINDS["temporal_neighbours"].serve is None
