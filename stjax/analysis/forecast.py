"""Forecasting behaviour volume: panels of daily series, a rolling-origin backtest with an
expanding window, and statsforecast's statistical baselines.

Panels (`panel`), defined so that they can be reproduced:

  ml-1m / ml-100k  daily ratings per genre (a movie counts for each of its genres); ML-1M from
                   2001-01-01 UTC to the end of the log (before that its volume is sign-up waves)
  foursquare-nyc   daily check-ins per H3 resolution-6 cell with at least 1,000 check-ins, exact
                   duplicate rows removed; day = whole 1,440-minute periods from the first check-in
                   (the copy's times are relative)
  synthetic        daily events per region, days from the first event

Backtest (`folds`): `count` folds, fold i trains on days [0, c_i) and forecasts [c_i, c_i + h)
with c_i = T - h (count - i): the last fold ends at the end of the series, folds step by the
horizon, and no fold sees a day at or after its cutoff. Per series and fold:

  MAE   = mean |y - f|            RMSE = sqrt(mean (y - f)^2)
  sMAPE = mean 2 |y - f| / (|y| + |f|)   (a term with y = f = 0 counts 0)
  MASE  = MAE / mean_t |y_t - y_{t-m}| over the fold's own training days (m = the season, 7)

averaged over series and folds; intervals (80% and 95%) are scored by their empirical coverage.
"""

from __future__ import annotations

import numpy as np

from stjax.analysis.drift import interest_labels

DAY = 86_400
BASELINES = ("SeasonalNaive", "AutoETS", "AutoARIMA", "AutoTheta")
LEVELS = (80, 95)


class ForecastError(ValueError):
    """A forecast that cannot run on these data or options (a user error)."""


def daily_counts(days: np.ndarray, groups: np.ndarray, names: list[str], first_day: int | None = None,
                 last_day: int | None = None) -> tuple[list[str], np.ndarray, int]:
    """Counts float64[S, T] of events per (group, day) over [first_day, last_day] (day numbers);
    -> (names, counts, first_day)."""
    days = np.asarray(days, np.int64)
    first = int(days.min()) if first_day is None else int(first_day)
    last = int(days.max()) if last_day is None else int(last_day)
    keep = (days >= first) & (days <= last)
    counts = np.zeros((len(names), last - first + 1))
    np.add.at(counts, (np.asarray(groups, np.int64)[keep], days[keep] - first), 1.0)
    return names, counts, first


def panel(log, source: str, min_events: int = 1000) -> dict:
    """The panel of `source` (see the module docstring): {names, values float[S, T], first_day,
    day_unit, definition}."""
    timestamps = np.asarray(log.timestamp, np.int64)
    if source in ("ml-1m", "ml-100k"):
        rows, codes, labels, _ = interest_labels(log, "genre")
        days = timestamps[rows] // DAY
        start = int(np.datetime64("2001-01-01", "D").astype(np.int64)) if source == "ml-1m" else None
        names, values, first = daily_counts(days, codes, labels, start, int(timestamps.max() // DAY))
        definition = ("daily ratings per genre (a movie counts for each of its genres)"
                      + (", from 2001-01-01 UTC to the end of the log" if start is not None else ""))
        unit = "UTC date"
    elif source == "foursquare-nyc":
        key = np.stack([np.asarray(log.user, np.int64), np.asarray(log.item, np.int64), timestamps], axis=1)
        _, unique = np.unique(key, axis=0, return_index=True)
        unique = np.sort(unique)
        region = np.asarray(log.region, np.int64)[unique]
        days = (timestamps[unique] - timestamps.min()) // DAY
        sizes = np.bincount(region, minlength=len(log.region_vocab.tokens))
        kept = [code for code in np.argsort(-sizes, kind="stable") if code > 0 and sizes[code] >= min_events]
        if not kept:
            raise ForecastError(f"no H3 cell has {min_events} check-ins")
        slot = np.full(len(sizes), -1)
        slot[kept] = np.arange(len(kept))
        chosen = slot[region] >= 0
        names, values, first = daily_counts(days[chosen], slot[region[chosen]],
                                            [str(log.region_vocab.tokens[c]) for c in kept], 0, int(days.max()))
        definition = (f"daily check-ins per H3 cell with at least {min_events} check-ins, exact duplicate rows "
                      f"removed ({len(timestamps) - len(unique):,} of {len(timestamps):,}); day = whole 1,440-minute "
                      "periods from the first check-in")
        unit = "days from the first check-in"
    else:
        region = np.asarray(log.region, np.int64)
        known = region > 0
        if not known.any():
            raise ForecastError(f"{source}: the events have no regions to make a panel of")
        days = (timestamps - timestamps.min()) // DAY
        present = np.unique(region[known])
        slot = np.full(len(log.region_vocab.tokens), -1)
        slot[present] = np.arange(len(present))
        names, values, first = daily_counts(days[known], slot[region[known]],
                                            [str(log.region_vocab.tokens[c]) for c in present], 0, int(days.max()))
        definition = "daily events per region, days from the first event"
        unit = "days from the first event"
    return {"names": names, "values": values, "first_day": first, "day_unit": unit, "definition": definition}


def folds(length: int, horizon: int = 7, count: int = 8, season: int = 7) -> list[int]:
    """The cutoffs c_i = length - horizon (count - i), i = 0..count-1 (see the module docstring)."""
    cutoffs = [length - horizon * (count - i) for i in range(count)]
    if cutoffs[0] < 2 * season + 1:
        raise ForecastError(f"{length} days are too few for {count} folds of {horizon} days after "
                            f"{2 * season + 1} days of training")
    return cutoffs


def scores(actual: np.ndarray, forecast: np.ndarray, history: np.ndarray, season: int = 7) -> dict[str, float]:
    """MAE, RMSE, sMAPE and MASE of one forecast (see the module docstring)."""
    actual, forecast, history = (np.asarray(x, np.float64) for x in (actual, forecast, history))
    error = actual - forecast
    denominator = np.abs(actual) + np.abs(forecast)
    smape = np.where(denominator > 0, 2 * np.abs(error) / np.where(denominator > 0, denominator, 1.0), 0.0)
    naive = np.abs(history[season:] - history[:-season]).mean() if len(history) > season else np.nan
    mae = float(np.abs(error).mean())
    return {"mae": mae, "rmse": float(np.sqrt((error ** 2).mean())), "smape": float(smape.mean()),
            "mase": mae / naive if naive and np.isfinite(naive) and naive > 0 else float("nan")}


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
             progress=None) -> dict:
    """Every model on every fold and series of the panel values float[S, T]: per model the metrics
    averaged over series and folds, the interval coverage, and the last fold's forecasts."""
    cutoffs = folds(values.shape[1], horizon, count, season)
    per_model: dict[str, dict[str, list]] = {name: {} for name in models}
    last = {}
    for number, cutoff in enumerate(cutoffs):
        train, actual = values[:, :cutoff], values[:, cutoff:cutoff + horizon]
        forecasts = statistical_forecasts(train, horizon, models, season)
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
    return {"cutoffs": cutoffs, "horizon": horizon, "season": season, "models": summary, "last_fold": last}


def forecast(log, source: str, horizon: int = 7, count: int = 8, models=BASELINES, min_events: int = 1000,
             progress=None) -> dict:
    """The forecasting analysis of `log` as a JSON-ready dict."""
    built = panel(log, source, min_events)
    values = built["values"]
    result = backtest(values, horizon, count, models, progress=progress)
    best = min(result["models"], key=lambda name: result["models"][name]["mase"])
    cutoff = result["cutoffs"][-1]
    return {"analysis": "forecast", "source": source, "definition": built["definition"],
            "day_unit": built["day_unit"], "first_day": built["first_day"], "series": built["names"],
            "days": int(values.shape[1]), "events": float(values.sum()), "best_by_mase": best,
            "history": np.round(values[:, max(0, cutoff - 8 * horizon):], 4).tolist(),
            "history_start": int(max(0, cutoff - 8 * horizon)), **result,
            "not_included": "stjax's own neural forecasters (an LSTM and a transformer trained by the engine) are "
                            "not built yet"}
