"""Behaviour volume as panels of daily series, and the windows a forecaster trains on.

Panels (`panel`), defined so that they can be reproduced:

  ml-1m / ml-100k  daily ratings per genre (a movie counts for each of its genres); ML-1M from
                   2001-01-01 UTC to the end of the log (before that its volume is sign-up waves)
  foursquare-nyc   daily check-ins per H3 resolution-6 cell with at least `min_events` check-ins,
                   exact duplicate rows removed; day = whole 1,440-minute periods from the first
                   check-in (the copy's times are relative)
  anything else    daily events per region, days from the first event (the synthetic data)

A forecaster's data (`series_data`) for one cutoff c (the first test day) and horizon h:

  train  every window whose targets end before c - h: inputs days [t - L, t), targets [t, t + h),
         for t = L_min .. c - 2h (days before the panel's start are padding, `observed` = 0)
  valid  one window per series, t = c - h (early stopping and the best checkpoint)
  test   one window per series, t = c (never seen in training or model selection)

so parameters see days < c - h, model selection days < c, and the test forecasts [c, c + h) from
the L days before c: no fold sees its future. Values are divided by each series' scale, the mean
of its days before c - h (at least 1): a global model over series of different sizes. `lags`
gives, for each target day, the same weekday in each of the last four weeks of the inputs (lag
features as in DeepAR); `times` and `target_times` are each day's start in seconds (UTC dates for
MovieLens, so weekdays are real; relative days elsewhere, so the weekly phase is arbitrary but
consistent). Forecasts are the quantiles `QUANTILES` of each target day.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stjax.data.interests import interest_labels

DAY = 86_400
QUANTILES = (0.025, 0.1, 0.5, 0.9, 0.975)  # a forecaster's outputs: the 95% and 80% intervals and the median
LAGS = 4  # weeks of same-weekday lag features
MIN_HISTORY = 14  # days of inputs before the first training target


class SeriesError(ValueError):
    """A panel or forecasting set-up that these data cannot give (a user error)."""


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
    day_unit, definition}. day_unit 'UTC date': day t is the date first_day + t (days since 1970)."""
    timestamps = np.asarray(log.timestamp, np.int64)
    if len(timestamps) == 0:
        raise SeriesError("the log has no events")
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
            raise SeriesError(f"no H3 cell has {min_events} check-ins")
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
            raise SeriesError(f"{source}: the events have no regions to make a panel of")
        days = (timestamps - timestamps.min()) // DAY
        present = np.unique(region[known])
        slot = np.full(len(log.region_vocab.tokens), -1)
        slot[present] = np.arange(len(present))
        names, values, first = daily_counts(days[known], slot[region[known]],
                                            [str(log.region_vocab.tokens[c]) for c in present], 0, int(days.max()))
        definition = "daily events per region, days from the first event"
        unit = "days from the first event"
    return {"names": names, "values": values, "first_day": first, "day_unit": unit, "definition": definition}


def seasonal_naive_error(history: np.ndarray, season: int = 7) -> np.ndarray:
    """mean_t |y_t - y_{t-m}| over each row of history float[S, t] (MASE's scale); NaN when t <= m."""
    history = np.asarray(history, np.float64)
    if history.shape[-1] <= season:
        return np.full(history.shape[:-1], np.nan)
    return np.abs(history[..., season:] - history[..., :-season]).mean(axis=-1)


@dataclasses.dataclass
class SeriesData:
    """A panel cut for one forecasting fold (see the module docstring), in the shape the engine
    reads: `num_users` series (their ids 0..S-1 are the batches' `users`), windows of
    `max_length` input days, `horizon` target days; `train`, `valid`, `test` are dicts of arrays
    (one row per window); `values` is the unscaled panel and `scale` each series' divisor."""

    names: list[str]
    values: np.ndarray
    first_day: int
    day_unit: str
    definition: str
    cutoff: int
    horizon: int
    max_length: int
    scale: np.ndarray
    train: dict
    valid: dict
    test: dict
    num_items: int = 1  # no item table; DataInfo wants a size
    time_origin: int = 0
    about: dict = dataclasses.field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(self.names)

    def history(self, part: str) -> np.ndarray:
        """The unscaled days before `part`'s targets, float[S, t] (MASE's in-sample scale)."""
        return self.values[:, :self.cutoff - (self.horizon if part == "valid" else 0)]


def day_seconds(first_day: int, day_unit: str, days: np.ndarray) -> np.ndarray:
    """Each day's start in seconds: the UTC date for dated panels, days x 86,400 for relative ones."""
    base = first_day if day_unit == "UTC date" else 0
    return ((base + np.asarray(days, np.int64)) * DAY).astype(np.int32)


def windows(values: np.ndarray, scale: np.ndarray, starts: np.ndarray, series: np.ndarray, length: int, horizon: int,
            first_day: int, day_unit: str) -> dict:
    """Windows with targets [t, t + h) and inputs [t - L, t) of series `series` at starts `starts`
    (both int[N]); days past the panel's end leave targets 0 (the test window of the last fold
    never has them: its cutoff is at most T - h)."""
    total = values.shape[1]
    days = starts[:, None] + np.arange(-length, 0)[None, :]  # [N, L]
    observed = days >= 0
    scaled = values / scale[:, None]
    inputs = np.where(observed, scaled[series[:, None], np.clip(days, 0, total - 1)], 0.0)
    target_days = starts[:, None] + np.arange(horizon)[None, :]
    inside = target_days < total
    targets = np.where(inside, scaled[series[:, None], np.clip(target_days, 0, total - 1)], 0.0)
    # The same weekday k weeks before the first target day of that weekday: column L + (j mod 7) - 7k.
    lag_columns = length + (np.arange(horizon)[:, None] % 7) - 7 * np.arange(1, LAGS + 1)[None, :]  # [h, LAGS]
    lags = inputs[:, np.clip(lag_columns, 0, length - 1)] * (lag_columns >= 0)[None]
    return {"users": series.astype(np.int32), "inputs": inputs.astype(np.float32),
            "observed": observed.astype(np.float32), "times": day_seconds(first_day, day_unit, days),
            "target_times": day_seconds(first_day, day_unit, target_days), "lags": lags.astype(np.float32),
            "targets": targets.astype(np.float32), "scale": scale[series].astype(np.float32)}


def series_data(built: dict, cutoff: int = 0, horizon: int = 7, length: int = 56) -> SeriesData:
    """The windows of panel `built` (from `panel`) for the fold whose test starts at `cutoff`
    (0 or less: T - h, the last h days; negative: T - h + cutoff)."""
    values = np.asarray(built["values"], np.float64)
    count, total = values.shape
    if cutoff <= 0:
        cutoff = total - horizon + cutoff
    if length < 7 * LAGS:
        raise SeriesError(f"data.max_length={length}: a forecaster reads at least {7 * LAGS} days (its lag features)")
    if cutoff + horizon > total:
        raise SeriesError(f"data.series_cutoff={cutoff}: the panel has {total} days, so the test days "
                          f"[{cutoff}, {cutoff + horizon}) run past its end")
    last_start = cutoff - 2 * horizon
    if last_start < MIN_HISTORY:
        raise SeriesError(f"the panel's {cutoff} days before the cutoff are too few for training windows and a "
                          f"validation week (at least {MIN_HISTORY + 2 * horizon})")
    scale = np.maximum(values[:, :cutoff - horizon].mean(axis=1), 1.0)
    starts = np.arange(MIN_HISTORY, last_start + 1)
    grid_series = np.repeat(np.arange(count), len(starts))
    grid_starts = np.tile(starts, count)
    every = np.arange(count)
    common = dict(length=length, horizon=horizon, first_day=built["first_day"], day_unit=built["day_unit"])
    return SeriesData(
        names=list(built["names"]), values=values, first_day=int(built["first_day"]), day_unit=built["day_unit"],
        definition=built["definition"], cutoff=int(cutoff), horizon=horizon, max_length=length, scale=scale,
        train=windows(values, scale, grid_starts, grid_series, **common),
        valid=windows(values, scale, np.full(count, cutoff - horizon), every, **common),
        test=windows(values, scale, np.full(count, cutoff), every, **common))


def sample_windows(batch_size: int, length: int, horizon: int) -> dict:
    """An all-padding batch of windows (init reads shapes only)."""
    zeros = np.zeros
    return {"users": zeros(batch_size, np.int32), "inputs": zeros((batch_size, length), np.float32),
            "observed": zeros((batch_size, length), np.float32), "times": zeros((batch_size, length), np.int32),
            "target_times": zeros((batch_size, horizon), np.int32),
            "lags": zeros((batch_size, horizon, LAGS), np.float32),
            "targets": zeros((batch_size, horizon), np.float32), "scale": np.ones(batch_size, np.float32),
            "weights": zeros(batch_size, np.float32)}
