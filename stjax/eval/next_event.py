"""The `next_event` evaluator: hours from each user's last history event to the next event (the
first target), predicted by a model's `predict`, against a per-user median-gap baseline.

Per evaluation row r (history window t_1 < ... < t_n, the last data.max_length events; next event
at time s): truth g_r = (s - t_n) / 3600 hours; the baseline b_r is the median of the window's
gaps t_{i+1} - t_i in hours, or, for a user with one history event, the median gap of the
training pairs (each training position and its next event: the gaps the model learns from).
Reported, averaged over rows: mae_hours = |f_r - g_r|, median_gap_mae_hours = |b_r - g_r|, and
both in log1p hours (`mae_log_hours`, `median_gap_mae_log_hours`: errors on the scale of gaps
from seconds to months); with num_users and fallback_users (rows that used the training median).
The model's step is jitted once; rows go in fixed-size batches split over the mesh axis `data`
and the sums stay on the device until the end. Lower is better for every metric.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stjax.devices import fetch
from stjax.eval.evaluator import (
    EvalSetup,
    EvaluationError,
    EvaluatorSpec,
    device_batches,
    eval_batch_size,
    register_evaluator,
    summed,
)

HOUR = 3600.0
METRICS = ("mae_hours", "median_gap_mae_hours", "mae_log_hours", "median_gap_mae_log_hours")
# The fields of the evaluation examples that travel: a time prediction masks no items (no `exclude`).
FIELDS = ("users", "items", "timestamps", "targets", "target_timestamps")


def training_median_gap_hours(train: dict) -> float:
    """The median gap in hours over the training pairs (positions with a target). train: the
    `SequenceData.train` arrays (timestamps, target_times, targets int32[N, T]); 0 without pairs."""
    gaps = (train["target_times"] - train["timestamps"])[train["targets"] > 0]
    return float(np.median(gaps)) / HOUR if len(gaps) else 0.0


def median_gap_hours(items: np.ndarray, timestamps: np.ndarray, fallback_hours: float) -> tuple[np.ndarray, np.ndarray]:
    """Each row's median gap between consecutive events of its window, in hours, and whether the
    row had fewer than two events and got `fallback_hours` instead.
    items, timestamps: int32[R, T] (left-padded, 0 = padding) -> (float64[R], bool[R])."""
    pair = (items[:, 1:] > 0) & (items[:, :-1] > 0)  # [R, T-1]
    gaps = np.where(pair, np.diff(timestamps.astype(np.int64), axis=1), np.nan).astype(np.float64)
    fallback = ~pair.any(axis=1)
    gaps[fallback] = 0.0  # no NaN-only rows for nanmedian; replaced below
    median = np.nanmedian(gaps, axis=1) / HOUR if gaps.shape[1] else np.zeros(len(items))
    return np.where(fallback, fallback_hours, median), fallback


def make_next_event_step(spec, module):
    """jit-compiled (params, batch, context, scoring) -> summed errors (METRICS) and counts."""

    def next_event_step(params, batch, context, scoring):
        predicted = spec.predict(module, {"params": params}, batch, context=context, scoring=scoring)
        predicted = jnp.maximum(predicted.astype(jnp.float32), 0.0)
        true = (batch["target_timestamps"] - batch["timestamps"][:, -1]).astype(jnp.float32) / HOUR  # [B]
        baseline = batch["median_gap_hours"]
        weights = batch["weights"]

        def total(values):
            return jnp.sum(values * weights)

        return {"mae_hours": total(jnp.abs(predicted - true)),
                "median_gap_mae_hours": total(jnp.abs(baseline - true)),
                "mae_log_hours": total(jnp.abs(jnp.log1p(predicted) - jnp.log1p(true))),
                "median_gap_mae_log_hours": total(jnp.abs(jnp.log1p(baseline) - jnp.log1p(true))),
                "fallback_users": total(batch["fallback"]), "count": jnp.sum(weights)}

    return jax.jit(next_event_step)


class NextEventEvaluator:
    """Hours to the next event on the valid or test examples (`SequenceData.valid/test`)."""

    name = "next_event"

    def __init__(self, setup: EvalSetup):
        spec, sequences, config = setup.spec, setup.sequences, setup.config
        if spec.predict is None or spec.batch_kind != "sequence":
            raise EvaluationError(f"eval.evaluators 'next_event' needs a model that reads 'sequence' batches and "
                                  f"predicts the time to the next event; '{spec.name}' is not one")
        self.spec, self.module, self.shardings = spec, setup.module, setup.shardings
        self.fallback_hours = training_median_gap_hours(sequences.train)
        self.examples, self.about = {}, {}
        for part in ("valid", "test"):
            examples = getattr(sequences, part)
            baseline, fallback = median_gap_hours(examples["items"], examples["timestamps"], self.fallback_hours)
            self.examples[part] = {field: examples[field] for field in FIELDS} | {
                "median_gap_hours": baseline.astype(np.float32), "fallback": fallback.astype(np.float32)}
            self.about[part] = dict(getattr(sequences, "about", {}).get(part, {}))
        multiple = setup.shardings.mesh.shape["data"] if setup.shardings is not None else 1
        self.batch_size = eval_batch_size(config, 1, 1, multiple)
        self.step = make_next_event_step(spec, setup.module)
        self._predict_step = None

    @property
    def description(self) -> str:
        return (f"next_event: hours from the last history event to the next event; baseline: each user's median "
                f"gap in the history window (one event: the training median, {self.fallback_hours:.2f} h)")

    def _device_batches(self, part: str):
        return device_batches(self.examples[part], self.batch_size, self.shardings)

    def evaluate(self, params, part: str, context=None, scoring=None) -> dict[str, float]:
        totals = summed(self.step, params, self._device_batches(part), context, scoring)
        if totals is None:
            return {}
        count = float(totals.pop("count"))
        metrics = {name: float(totals[name]) / max(count, 1.0) for name in METRICS}
        return metrics | {"num_users": int(count), "fallback_users": int(round(float(totals["fallback_users"])))}

    def per_row(self, params, part: str, context=None, scoring=None) -> dict[str, np.ndarray]:
        """Each row of `part`: users, targets, predicted / true / baseline hours and each row's
        errors (their means are `evaluate`'s numbers), and what the row is about."""
        context = {} if context is None else context
        if self._predict_step is None:  # compiled on first use: rows are asked for once per run
            self._predict_step = jax.jit(lambda params, batch, context, scoring: self.spec.predict(
                self.module, {"params": params}, batch, context=context, scoring=scoring))
        examples = self.examples[part]
        count = len(examples["users"])
        chunks = [np.asarray(fetch(self._predict_step(params, batch, context, scoring)))
                  for batch in self._device_batches(part)]
        predicted = np.maximum(np.concatenate(chunks)[:count], 0.0) if chunks else np.zeros(0, np.float32)
        true = (examples["target_timestamps"] - examples["timestamps"][:, -1]).astype(np.float64) / HOUR
        baseline = examples["median_gap_hours"].astype(np.float64)
        return {"users": np.asarray(examples["users"], np.int32), "targets": examples["targets"],
                "predicted_hours": predicted.astype(np.float32), "true_hours": true.astype(np.float32),
                "median_gap_hours": baseline.astype(np.float32),
                "mae_hours": np.abs(predicted - true).astype(np.float32),
                "median_gap_mae_hours": np.abs(baseline - true).astype(np.float32),
                "mae_log_hours": np.abs(np.log1p(predicted) - np.log1p(true)).astype(np.float32),
                "median_gap_mae_log_hours": np.abs(np.log1p(baseline) - np.log1p(true)).astype(np.float32),
                **{f"about/{name}": value for name, value in self.about[part].items()}}


register_evaluator(EvaluatorSpec("next_event", NextEventEvaluator, ("leave_one_out", "temporal"),
                                 lambda config: METRICS, lower_is_better=lambda name: True,
                                 metric_help=lambda config: "one of " + ", ".join(METRICS)))
