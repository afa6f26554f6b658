"""What the forecasters share (`forecast_lstm`, `forecast_transformer`): the inputs of a window of
daily counts, the quantile head, the pinball loss and the interface functions.

A window (`stjax.data.series`) holds L days of scaled counts, whether each day exists, each day's
start (seconds) and the series' id; the targets are the next h days. The inputs of day t are
[y_t, log1p y_t, observed_t] projected to D, plus calendar embeddings of the day (day of week:
`stjax.layers.CalendarEmbedding`) and the series' embedding (a global model over the panel).
The head reads the encoder's summary of the window, each target day's calendar and horizon
embeddings and its lag features (the same weekday in each of the last four weeks, as DeepAR reads
lags), and returns the quantiles `QUANTILES` of each target day: the median is the mean of the
lags plus a learned correction (so an untrained model starts at a seasonal average), and the
other quantiles are the median plus or minus cumulative softplus gaps (never crossing).
Trained by the pinball (quantile) loss, averaged over target days and quantiles.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from stjax.data.series import QUANTILES
from stjax.layers import CalendarEmbedding


def default_config(name: str, **extra) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name=name, hidden=32, dropout=0.1, **extra))


class SeriesInputs(nn.Module):
    """batch -> float[B, L, D]: each input day's features (see the module docstring)."""

    hidden: int
    num_series: int

    @nn.compact
    def __call__(self, batch):
        values = batch["inputs"]
        observed = batch["observed"]
        features = jnp.stack([values, jnp.log1p(jnp.maximum(values, 0.0)), observed], axis=-1)
        x = nn.Dense(self.hidden, name="value")(features)
        x = x + CalendarEmbedding(self.hidden, name="calendar")(batch["times"]) * observed[..., None]
        series = nn.Embed(self.num_series, self.hidden, name="series",
                          embedding_init=nn.initializers.normal(0.02))(batch["users"])
        return x + series[:, None, :]


class QuantileHead(nn.Module):
    """(summary float[B, D], batch) -> quantiles float[B, h, Q] of the scaled target days."""

    hidden: int
    horizon: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, summary, batch, deterministic: bool = True):
        lags = batch["lags"]  # [B, h, LAGS]
        reference = jnp.mean(lags, axis=-1)
        lag_features = jnp.concatenate([lags, jnp.log1p(jnp.maximum(lags, 0.0))], axis=-1)
        h = (summary[:, None, :] + CalendarEmbedding(self.hidden, name="calendar")(batch["target_times"])
             + nn.Embed(self.horizon, self.hidden, name="horizon")(jnp.arange(self.horizon))[None]
             + nn.Dense(self.hidden, name="lags")(lag_features))
        h = nn.gelu(nn.Dense(2 * self.hidden, name="hidden")(nn.LayerNorm(name="norm")(h)))
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        out = nn.Dense(len(QUANTILES), name="out", kernel_init=nn.initializers.zeros)(h)
        median = reference + out[..., 0]
        gap = jax.nn.softplus(out[..., 1:] + 0.5) * jnp.maximum(reference, 0.1)[..., None] * 0.3
        high_80 = median + gap[..., 0]
        high_95 = high_80 + gap[..., 1]
        low_80 = median - gap[..., 2]
        low_95 = low_80 - gap[..., 3]
        return jnp.stack([low_95, low_80, median, high_80, high_95], axis=-1)


def pinball_loss(quantiles, targets, weights):
    """Mean pinball loss over the real rows' target days and the quantiles; (loss, target days)."""
    levels = jnp.asarray(QUANTILES, jnp.float32)
    error = targets[..., None] - quantiles  # [B, h, Q]
    terms = jnp.maximum(levels * error, (levels - 1.0) * error).mean(axis=-1)  # [B, h]
    days = jnp.sum(weights) * targets.shape[1]
    return jnp.sum(terms * weights[:, None]) / jnp.maximum(days, 1.0), days


def forecaster_defaults(config: ml_collections.ConfigDict) -> None:
    """The engine keys of a forecaster (`ModelSpec.engine_defaults`): the panel cut into windows of
    8 weeks, the `forecast` evaluator, early stopping on validation MASE every epoch."""
    config.data.split = "series"
    config.data.max_length = 56
    config.eval.evaluators = ("forecast",)
    config.eval.metric = "mase"
    config.train.num_epochs = 100
    config.train.eval_every_epochs = 1
    config.train.patience = 8
    config.train.warmup_steps = 0
    config.train.schedule = "constant"
    config.train.learning_rate = 3e-3
    config.train.batch_size = 128


def series_init(module, rng, batch, *, context=None):
    return module.init(rng, batch)


def series_losses(module, variables, batch, *, rng, step, context, config):
    quantiles = module.apply(variables, batch, deterministic=False, rngs={"dropout": rng})
    loss, days = pinball_loss(quantiles.astype(jnp.float32), batch["targets"], batch["weights"])
    return {"model": loss}, {"targets": days}


def series_predict(module, variables, batch, *, context=None, scoring=None):
    """Quantiles float[B, h, Q] of the scaled target days (the evaluator multiplies by the scale)."""
    return module.apply(variables, batch, deterministic=True).astype(jnp.float32)


def series_encode(module, variables, batch, *, context=None, scoring=None):
    """The encoder's summary of each window float[B, D] (a vector per series)."""
    return module.apply(variables, batch, method="summary")
