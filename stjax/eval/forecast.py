"""The `forecast` evaluator: a forecaster's quantiles of the next `horizon` days of every series,
scored as the backtest of `stjax analyze forecast` scores the statistical baselines.

Per series (unscaled values; `forecast_scores`):

  MAE   = mean |y - f|            RMSE = sqrt(mean (y - f)^2)
  sMAPE = mean 2 |y - f| / (|y| + |f|)   (a term with y = f = 0 counts 0)
  MASE  = MAE / mean_t |y_t - y_{t-m}| over the days before the part's targets (m = 7)

with f the median, averaged over series; coverage-80 and coverage-95 are the shares of target
days inside the central 80% and 95% intervals (quantiles 0.1-0.9 and 0.025-0.975). The
forecaster's step is jitted once (the series go in one padded batch split over `data`).
"""

from __future__ import annotations

import jax
import numpy as np

from stjax.data.series import QUANTILES, seasonal_naive_error
from stjax.devices import fetch
from stjax.eval.evaluator import (
    EvalSetup,
    EvaluationError,
    EvaluatorSpec,
    device_batches,
    register_evaluator,
)

METRICS = ("mae", "rmse", "smape", "mase", "coverage-80", "coverage-95")
INTERVALS = {80: (QUANTILES.index(0.1), QUANTILES.index(0.9)), 95: (QUANTILES.index(0.025), QUANTILES.index(0.975))}


def forecast_scores(actual: np.ndarray, forecast: np.ndarray, history: np.ndarray, season: int = 7) -> dict[str, float]:
    """MAE, RMSE, sMAPE and MASE of one series' forecast (see the module docstring)."""
    actual, forecast, history = (np.asarray(x, np.float64) for x in (actual, forecast, history))
    error = actual - forecast
    denominator = np.abs(actual) + np.abs(forecast)
    smape = np.where(denominator > 0, 2 * np.abs(error) / np.where(denominator > 0, denominator, 1.0), 0.0)
    naive = float(seasonal_naive_error(history, season))
    mae = float(np.abs(error).mean())
    return {"mae": mae, "rmse": float(np.sqrt((error ** 2).mean())), "smape": float(smape.mean()),
            "mase": mae / naive if np.isfinite(naive) and naive > 0 else float("nan")}


class ForecastEvaluator:
    """Forecasts of the valid or test window of every series (`SeriesData.valid/test`)."""

    name = "forecast"

    def __init__(self, setup: EvalSetup):
        spec, data = setup.spec, setup.sequences
        if spec.predict is None or spec.batch_kind != "series":
            raise EvaluationError(f"eval.evaluators 'forecast' needs a forecaster (a model that reads 'series' "
                                  f"batches and predicts); '{spec.name}' is not one")
        self.spec, self.module, self.data, self.shardings = spec, setup.module, data, setup.shardings
        multiple = setup.shardings.mesh.shape["data"] if setup.shardings is not None else 1
        self.batch_size = -(-data.num_users // multiple) * multiple
        self.step = jax.jit(lambda params, batch, context, scoring: spec.predict(
            setup.module, {"params": params}, batch, context=context, scoring=scoring))

    @property
    def description(self) -> str:
        return (f"forecast: {self.data.num_users} series, the {self.data.horizon} days after the inputs' "
                f"{self.data.max_length}; median, 80% and 95% intervals")

    def forecasts(self, params, part: str, context=None, scoring=None) -> dict[str, np.ndarray]:
        """Unscaled quantiles float[S, h, Q] of `part` and the actual values float[S, h]."""
        examples = getattr(self.data, part)
        batch = next(device_batches(examples, self.batch_size, self.shardings))  # every series in one batch
        quantiles = np.asarray(fetch(self.step(params, batch, {} if context is None else context, scoring)),
                               np.float64)[:self.data.num_users]
        scale = np.asarray(examples["scale"], np.float64)
        return {"quantiles": quantiles * scale[:, None, None], "actual": examples["targets"] * scale[:, None]}

    def evaluate(self, params, part: str, context=None, scoring=None) -> dict[str, float]:
        out = self.forecasts(params, part, context, scoring)
        quantiles, actual = out["quantiles"], out["actual"]
        history = self.data.history(part)
        median = quantiles[..., QUANTILES.index(0.5)]
        per_series = [forecast_scores(actual[s], median[s], history[s]) for s in range(len(actual))]
        metrics = {name: float(np.nanmean([row[name] for row in per_series])) for name in METRICS[:4]}
        for level, (low, high) in INTERVALS.items():
            inside = (actual >= quantiles[..., low]) & (actual <= quantiles[..., high])
            metrics[f"coverage-{level}"] = float(inside.mean())
        metrics["num_users"] = len(actual)
        return metrics

    def per_row(self, params, part: str, context=None, scoring=None) -> dict[str, np.ndarray]:
        """Each series' forecast of `part` (median, interval bounds, actual), for the run folder."""
        out = self.forecasts(params, part, context, scoring)
        quantiles = out["quantiles"]
        rows = {"users": np.arange(len(quantiles), dtype=np.int32), "series": np.asarray(self.data.names),
                "actual": out["actual"], "mean": quantiles[..., QUANTILES.index(0.5)],
                "quantiles": quantiles, "levels": np.asarray(QUANTILES)}
        for level, (low, high) in INTERVALS.items():
            rows[f"lo-{level}"], rows[f"hi-{level}"] = quantiles[..., low], quantiles[..., high]
        return rows


register_evaluator(EvaluatorSpec("forecast", ForecastEvaluator, ("series",), lambda config: METRICS,
                                 lower_is_better=lambda name: not name.startswith("coverage")))
