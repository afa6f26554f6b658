"""Time to a user's next event: the `next_event` evaluator against a Python loop; the `next_gap`
model's context, padding and losses against a loop; and one `stjax train` of the tiny experiment
on a planted daily rhythm that the model learns and the median-gap baseline cannot (one compile
per step; `stjax evaluate` gives the same numbers)."""

import json
import statistics
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from click.testing import CliRunner

from stjax import models
from stjax.cli import main
from stjax.config import ConfigError, base_config, tiny, validate
from stjax.eval.evaluator import EvalSetup, EvaluationError, metric_names
from stjax.eval.next_event import METRICS, NextEventEvaluator
from stjax.models.base import DataInfo

ROOT = Path(__file__).resolve().parents[1]
HOUR = 3600


# ----------------------------------------------------------------------------- the evaluator


def _hand_built():
    """5 users (left-padded windows of 7), one with a single event; 3 training rows."""
    histories = [[0, 600, 4200], [100], [0, 3600, 7200, 7300, 90_000, 90_060, 99_000],
                 [50, 50, 3650, 10_000], [1_000, 30_000]]
    nexts = [4200 + 5 * HOUR, 100 + 2 * HOUR, 99_000 + 30, 10_000 + 40 * HOUR, 30_000 + 7]
    width = 7
    items = np.zeros((5, width), np.int32)
    times = np.zeros((5, width), np.int32)
    for row, history in enumerate(histories):
        items[row, width - len(history):] = np.arange(1, len(history) + 1)
        times[row, width - len(history):] = history
    examples = {"users": np.arange(1, 6, dtype=np.int32), "items": items, "timestamps": times,
                "targets": np.full((5, 1), 9, np.int32), "target_timestamps": np.asarray(nexts, np.int32),
                "exclude": items.copy()}
    train = {"timestamps": np.asarray([[0, 10, 70], [0, 0, 5]], np.int32),
             "target_times": np.asarray([[10, 70, 7270], [0, 5, 5 + 9 * HOUR]], np.int32),
             "targets": np.asarray([[3, 4, 5], [0, 2, 6]], np.int32)}
    sequences = types.SimpleNamespace(train=train, valid=examples, test=examples, about={})
    return histories, nexts, train, sequences


def _predict(module, variables, batch, *, context=None, scoring=None):
    return batch["users"].astype(jnp.float32) * 1.5  # a known prediction: 1.5 hours per user id


def test_evaluator_mae_and_median_gap_baseline_match_a_loop():
    histories, nexts, train, sequences = _hand_built()
    spec = types.SimpleNamespace(name="fixed", predict=_predict, batch_kind="sequence")
    config = ml_collections.ConfigDict(dict(batch_size=2, max_score_block=0))  # 3 batches, the last padded
    evaluator = NextEventEvaluator(EvalSetup(spec, None, sequences, config, "leave_one_out"))
    metrics = evaluator.evaluate({}, "test")

    # Written another way: the training pairs' gaps, then each user in a Python loop.
    pairs = [(b - a) for row_a, row_b, row_t in zip(train["timestamps"], train["target_times"], train["targets"])
             for a, b, t in zip(row_a, row_b, row_t) if t > 0]
    fallback = statistics.median(pairs) / HOUR
    errors, baseline_errors, log_errors, baseline_log_errors = [], [], [], []
    for user, (history, next_time) in enumerate(zip(histories, nexts), start=1):
        gaps = [later - earlier for earlier, later in zip(history, history[1:])]
        baseline = statistics.median(gaps) / HOUR if gaps else fallback
        true = (next_time - history[-1]) / HOUR
        predicted = 1.5 * user
        errors.append(abs(predicted - true))
        baseline_errors.append(abs(baseline - true))
        log_errors.append(abs(np.log1p(predicted) - np.log1p(true)))
        baseline_log_errors.append(abs(np.log1p(baseline) - np.log1p(true)))
    assert metrics["num_users"] == 5 and metrics["fallback_users"] == 1
    np.testing.assert_allclose(metrics["mae_hours"], np.mean(errors), rtol=1e-5)
    np.testing.assert_allclose(metrics["median_gap_mae_hours"], np.mean(baseline_errors), rtol=1e-5)
    np.testing.assert_allclose(metrics["mae_log_hours"], np.mean(log_errors), rtol=1e-5)
    np.testing.assert_allclose(metrics["median_gap_mae_log_hours"], np.mean(baseline_log_errors), rtol=1e-5)
    rows = evaluator.per_row({}, "test")
    np.testing.assert_allclose(rows["median_gap_mae_hours"], baseline_errors, rtol=1e-5)
    np.testing.assert_allclose(rows["mae_hours"].mean(), metrics["mae_hours"], rtol=1e-5)


def test_next_event_refuses_a_ranking_model_and_sets_the_metric_direction():
    _, _, _, sequences = _hand_built()
    config = base_config("next_gap").eval
    with pytest.raises(EvaluationError, match="'next_event' needs a model"):
        NextEventEvaluator(EvalSetup(models.get("sasrec"), None, sequences, config, "leave_one_out"))
    assert tuple(config.evaluators) == ("next_event",) and config.metric == "mae_hours"
    assert metric_names(config)["mae_hours"] == ("next_event", True)  # lower is better: early stopping
    wrong = base_config("next_gap")
    wrong.eval.metric = "ndcg@10"
    with pytest.raises(ConfigError, match="eval.metric.*one of mae_hours"):
        validate(wrong)


# ----------------------------------------------------------------------------- the model


def test_padding_changes_no_prediction_and_example_scores_sum_to_the_loss():
    spec = models.get("next_gap")
    config = tiny(base_config("next_gap")).model
    config.dropout = 0.0
    module = spec.make(config, DataInfo(num_users=3, num_items=11, max_length=5))
    rng = np.random.default_rng(0)
    items = np.asarray([[0, 0, 3, 7, 2], [0, 0, 0, 0, 5], [4, 1, 1, 9, 11]], np.int32)  # [B=3, T=5]
    timestamps = np.where(items > 0, np.sort(rng.integers(0, 10 * 86_400, items.shape), axis=1), 0).astype(np.int32)
    targets = np.where(items > 0, np.roll(items, -1, axis=1), 0)
    targets[:, -1] = 0
    batch = {"users": np.arange(1, 4, dtype=np.int32), "items": items, "timestamps": timestamps, "targets": targets,
             "target_times": np.where(targets > 0, np.roll(timestamps, -1, axis=1), 0).astype(np.int32),
             "weights": np.asarray([1.0, 1.0, 0.0], np.float32)}  # the third row is padding
    train = {key: batch[key] for key in ("timestamps", "target_times", "targets")}
    context = spec.make_context(types.SimpleNamespace(sequences=types.SimpleNamespace(train=train, time_origin=123_457)),
                                None, None)
    gaps = (batch["target_times"] - timestamps)[targets > 0]
    assert int(context["week_phase"]) == 123_457 % (7 * 86_400)
    np.testing.assert_allclose(float(context["median_log_gap"]), np.median(np.log1p(gaps / HOUR)), rtol=1e-6)
    variables = jax.jit(lambda key: spec.init(module, key, batch, context=context))(jax.random.key(1))
    variables = jax.tree_util.tree_map(lambda leaf: getattr(leaf, "value", leaf), variables,
                                       is_leaf=lambda leaf: hasattr(leaf, "value"))
    # Untrained (a zero output layer), every prediction is the training pairs' median gap.
    predict = jax.jit(lambda variables, batch: spec.predict(module, variables, batch, context=context))
    np.testing.assert_allclose(np.asarray(predict(variables, batch)), np.expm1(float(context["median_log_gap"])),
                               rtol=1e-5)
    variables = jax.tree_util.tree_map(lambda leaf: leaf + 0.05 * rng.standard_normal(leaf.shape).astype(leaf.dtype),
                                       variables)  # away from the zero output layer
    # Two more padding columns on the left: the predictions at real positions stay the same.
    apply = jax.jit(lambda variables, items, timestamps: module.apply(
        variables, items, timestamps, context["week_phase"], context["median_log_gap"]))
    narrow = np.asarray(apply(variables, items, timestamps))
    wide = np.asarray(apply(variables, np.pad(items, ((0, 0), (2, 0))), np.pad(timestamps, ((0, 0), (2, 0)))))[:, 2:]
    np.testing.assert_allclose(wide[items > 0], narrow[items > 0], rtol=1e-5, atol=1e-6)
    assert np.ptp(narrow[items > 0]) > 1e-3  # not a constant: the check above can fail
    # Per-example sums over the targets, weighted, give the batch loss; written as a loop here.
    losses, aux = jax.jit(lambda variables, batch: spec.losses(module, variables, batch, rng=jax.random.key(0),
                                                               step=0, context=context, config=config))(variables, batch)
    scores = jax.jit(lambda variables, batch: spec.example_scores(module, variables, batch, context=context))(
        variables, batch)
    expected = [sum(abs(narrow[r, t] - np.log1p((batch["target_times"][r, t] - timestamps[r, t]) / HOUR))
                    for t in range(5) if targets[r, t] > 0) * batch["weights"][r] for r in range(3)]
    np.testing.assert_allclose(np.asarray(scores["loss"]), expected, rtol=1e-4, atol=1e-6)
    count = sum((targets[r] > 0).sum() * batch["weights"][r] for r in range(3))
    assert float(aux["targets"]) == count == float(scores["targets"].sum())
    np.testing.assert_allclose(float(losses["model"]), sum(expected) / count, rtol=1e-4)


def _daily_rhythm(path: Path, users: int = 90, days: int = 16, seed: int = 0) -> None:
    """Each user comes at hour m_u and m_u + d_u every day (d_u in 2..10, +-5 min): the gaps
    alternate d_u and 24 - d_u, so a user's median gap misses the next one by |24 - 2 d_u| / 2 or
    more, while the previous gap (or the hour of day) tells it exactly."""
    rng = np.random.default_rng(seed)
    start = 1_700_006_400  # a midnight, UTC
    rows = ["user,item,timestamp"]
    for user in range(users):
        morning, gap = int(rng.integers(6, 11)), int(rng.integers(2, 11))
        for day in range(days):
            for hour in (morning, morning + gap):
                when = start + day * 86_400 + hour * HOUR + int(rng.integers(-300, 300))
                rows.append(f"u{user},i{int(rng.integers(1, 30))},{when}")
    path.write_text("\n".join(rows) + "\n")


# ----------------------------------------------------------------------------- end to end

EXPERIMENT = str(ROOT / "experiments" / "next_gap_synthetic.py") + ":tiny"


@pytest.fixture(scope="module")
def rhythm_run(tmp_path_factory):
    """`stjax train` of the tiny experiment on the planted daily rhythm, through the CLI."""
    root = tmp_path_factory.mktemp("rhythm")
    _daily_rhythm(root / "rhythm.csv")
    overrides = [f"--config.data.source={root / 'rhythm.csv'}", "--config.data.window=all",
                 "--config.model.state=32", "--config.train.num_epochs=30", "--config.train.eval_every_epochs=10"]
    result = CliRunner().invoke(main, ["train", "--config", EXPERIMENT, "--workdir", str(root / "run"),
                                       "--no-progress", *overrides])
    assert result.exit_code == 0, result.output
    return root / "run", json.loads((root / "run" / "results.json").read_text())


def test_the_model_learns_a_daily_rhythm_that_the_median_gap_misses(rhythm_run):
    _, results = rhythm_run
    test = results["test"]
    assert test["num_users"] == 90 and test["fallback_users"] == 0
    assert test["median_gap_mae_hours"] > 8.0  # the baseline cannot follow the alternation
    assert test["mae_hours"] < 1.0, test  # the model does (untrained, it predicts one median for all)


def test_the_cli_run_compiles_once_and_evaluate_gives_the_same(rhythm_run):
    workdir, results = rhythm_run
    for part in ("valid", "test"):
        assert set(METRICS) | {"num_users", "fallback_users"} == set(results[part])
        assert all(np.isfinite(value) for value in results[part].values())
    assert results["timings"]["train_step_compiles"] == 1
    assert results["timings"]["eval_step_compiles"] == 1  # three validations and the final two parts
    assert list(results["protocols"]) == ["next_event"]
    rows = np.load(workdir / "test_rows.npz")
    np.testing.assert_allclose(rows["mae_hours"].mean(), results["test"]["mae_hours"], rtol=1e-5)
    evaluated = CliRunner().invoke(main, ["evaluate", "--workdir", str(workdir)])
    assert evaluated.exit_code == 0, evaluated.output
    again = json.loads(evaluated.output.strip().splitlines()[-1])  # the run folder's context, restored
    for name in METRICS:
        np.testing.assert_allclose(again["test"][name], results["test"][name], rtol=1e-5)
