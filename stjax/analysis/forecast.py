"""Forecasting behaviour volume: panels of daily series, a rolling-origin backtest with an
expanding window, and statsforecast's statistical baselines.

Panels (`panel`) are defined in `stjax.data.series`, where the engine's forecasters read them too.

Backtest (`folds`): `count` folds, fold i trains on days [0, c_i) and forecasts [c_i, c_i + h)
with c_i = T - h (count - i): the last fold ends at the end of the series, folds step by the
horizon, and no fold sees a day at or after its cutoff. Per series and fold:

  MAE   = mean |y - f|            RMSE = sqrt(mean (y - f)^2)
  sMAPE = mean 2 |y - f| / (|y| + |f|)   (a term with y = f = 0 counts 0)
  MASE  = MAE / mean_t |y_t - y_{t-m}| over the fold's own training days (m = the season, 7)

averaged over series and folds (`stjax.eval.forecast.forecast_scores`, the engine's forecast
evaluator's); intervals (80% and 95%) are scored by their empirical coverage. Beside the
statistical baselines, `engine` forecasters (stjax's own, trained by the engine once per fold on
the days before the fold's cutoff: see `stjax.data.series`) are scored the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from stjax.data.series import SeriesError, daily_counts, panel  # noqa: F401  (re-exported)
from stjax.eval.forecast import forecast_scores as scores

DAY = 86_400
BASELINES = ("SeasonalNaive", "AutoETS", "AutoARIMA", "AutoTheta")
LEVELS = (80, 95)


class ForecastError(SeriesError):
    """A forecast that cannot run on these data or options (a user error)."""


def folds(length: int, horizon: int = 7, count: int = 8, season: int = 7) -> list[int]:
    """The cutoffs c_i = length - horizon (count - i), i = 0..count-1 (see the module docstring)."""
    cutoffs = [length - horizon * (count - i) for i in range(count)]
    if cutoffs[0] < 2 * season + 1:
        raise ForecastError(f"{length} days are too few for {count} folds of {horizon} days after "
                            f"{2 * season + 1} days of training")
    return cutoffs


def statistical_forecasts(train: np.ndarray, horizon: int, models=BASELINES, season: int = 7) -> dict:
    """statsforecast's models fitted to each row of train float[S, t]: {model: {"mean": [S, h],
    "lo-80", "hi-80", "lo-95", "hi-95"}}."""
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast import models as sf_models

    makers = {"SeasonalNaive": lambda: sf_models.SeasonalNaive(season_length=season),
              "AutoETS": lambda: sf_models.AutoETS(season_length=season),
              "AutoARIMA": lambda: sf_models.AutoARIMA(season_length=season),
              "AutoTheta": lambda: sf_models.AutoTheta(season_length=season)}
    unknown = [name for name in models if name not in makers]
    if unknown:
        raise ForecastError(f"--models: unknown {', '.join(unknown)}; expected {', '.join(makers)}")
    count, length = train.shape
    frame = pd.DataFrame({"unique_id": np.repeat(np.arange(count), length), "ds": np.tile(np.arange(length), count),
                          "y": train.ravel()})
    engine = StatsForecast(models=[makers[name]() for name in models], freq=1, n_jobs=1)
    out = engine.forecast(df=frame, h=horizon, level=list(LEVELS)).sort_values(["unique_id", "ds"])
    result = {}
    for name in models:
        entry = {"mean": out[name].to_numpy().reshape(count, horizon)}
        for level in LEVELS:
            for side in ("lo", "hi"):
                entry[f"{side}-{level}"] = out[f"{name}-{side}-{level}"].to_numpy().reshape(count, horizon)
        result[name] = entry
    return result


def backtest(values: np.ndarray, horizon: int = 7, count: int = 8, models=BASELINES, season: int = 7,
             progress=None, engine: dict[str, Callable] | None = None) -> dict:
    """Every model on every fold and series of the panel values float[S, T]: per model the metrics
    averaged over series and folds, the interval coverage, and the last fold's forecasts.

    engine: {name: forecaster(cutoff, fold) -> {"mean", "lo-80", "hi-80", "lo-95", "hi-95": float[S, h]}}
    (and optionally "about": what the fold's training did), called once per fold; it must use only
    the days before `cutoff` (the engine's forecasters: `stjax.data.series`)."""
    cutoffs = folds(values.shape[1], horizon, count, season)
    engine = engine or {}
    per_model: dict[str, dict[str, list]] = {name: {} for name in (*models, *engine)}
    last, about = {}, {name: [] for name in engine}
    for number, cutoff in enumerate(cutoffs):
        train, actual = values[:, :cutoff], values[:, cutoff:cutoff + horizon]
        forecasts = statistical_forecasts(train, horizon, models, season) if models else {}
        for name, forecaster in engine.items():
            forecast = dict(forecaster(cutoff, number))
            about[name].append(forecast.pop("about", {}))
            forecasts[name] = {key: np.asarray(value, np.float64) for key, value in forecast.items()}
        for name, forecast in forecasts.items():
            record = per_model[name]
            for row in range(values.shape[0]):
                for metric, value in scores(actual[row], forecast["mean"][row], train[row], season).items():
                    record.setdefault(metric, []).append(value)
            for level in LEVELS:
                inside = (actual >= forecast[f"lo-{level}"]) & (actual <= forecast[f"hi-{level}"])
                record.setdefault(f"coverage-{level}", []).append(float(inside.mean()))
            if number == len(cutoffs) - 1:
                last[name] = {key: np.round(value, 4).tolist() for key, value in forecast.items()}
        if progress is not None:
            progress(number + 1, len(cutoffs))
    summary = {name: {metric: float(np.nanmean(values_)) for metric, values_ in record.items()}
               for name, record in per_model.items()}
    result = {"cutoffs": cutoffs, "horizon": horizon, "season": season, "models": summary, "last_fold": last}
    if engine:
        result["engine_folds"] = about
    return result


def forecast(log, source: str, horizon: int = 7, count: int = 8, models=BASELINES, min_events: int = 1000,
             progress=None, engine: dict[str, Callable] | None = None) -> dict:
    """The forecasting analysis of `log` as a JSON-ready dict (engine: see `backtest`)."""
    built = panel(log, source, min_events)
    values = built["values"]
    result = backtest(values, horizon, count, models, progress=progress, engine=engine)
    best = min(result["models"], key=lambda name: result["models"][name]["mase"])
    cutoff = result["cutoffs"][-1]
    return {"analysis": "forecast", "source": source, "definition": built["definition"],
            "day_unit": built["day_unit"], "first_day": built["first_day"], "series": built["names"],
            "days": int(values.shape[1]), "events": float(values.sum()), "best_by_mase": best,
            "history": np.round(values[:, max(0, cutoff - 8 * horizon):], 4).tolist(),
            "history_start": int(max(0, cutoff - 8 * horizon)), **result,
            "statistical": list(models), "engine": list(engine or {})}
