"""NextGap: the time to a user's next event, read from the event sequence by an RNN. Ranks no items.

Each event t enters as its item embedding, its hour of day and weekday (`CalendarEmbedding`) and
the gap since the previous event (log1p hours and `FunctionalTimeEncoding`); a GRU/LSTM reads
them and a small head predicts y_t = log1p(hours from event t to event t+1) at every position.
`predict` reads the last position: the hours to the event after the history, float[B].

Loss: L1 on log1p(gap hours) over the positions with a next event. The minimiser of E|y - c| is
the conditional median of y, and a median commutes with the monotone log1p, so expm1(prediction)
estimates the median gap in hours: the value that minimises the MAE in hours reported by
`stjax.eval.next_event`. The log scale puts gaps of seconds and of months on one output scale, and
unlike a log-normal likelihood L1 assumes no shape (rating logs mix gaps of seconds within a
session with gaps of weeks between sessions).

The context holds the training pairs' median log gap, from which predictions are offsets (an
untrained model predicts the global median gap), and `week_phase`, the run's time origin modulo one
week: relative times plus it have the hour of day and weekday of the absolute times.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from stjax.layers import RNN, CalendarEmbedding, FunctionalTimeEncoding
from stjax.models.base import ModelSpec
from stjax.models.shared import item_embedding

HOUR = 3600.0
WEEK = 7 * 86_400


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(name="next_gap", hidden=32, state=64, num_layers=1, cell="gru",
                                          time_features=8, dropout=0.1))


def log_hours(seconds):
    """log1p of a duration in hours; seconds: int or float[...] >= 0 -> float32[...]."""
    return jnp.log1p(jnp.asarray(seconds, jnp.float32) / HOUR)


def previous_gaps(items, timestamps):
    """Seconds since each event's previous event in the window, and whether there is one.
    items, timestamps: int32[B, T] (left-padded) -> (float32[B, T], bool[B, T])."""
    has_previous = jnp.pad((items[:, :-1] > 0) & (items[:, 1:] > 0), ((0, 0), (1, 0)))
    gaps = jnp.pad(timestamps[:, 1:] - timestamps[:, :-1], ((0, 0), (1, 0)))
    return jnp.where(has_previous, gaps, 0).astype(jnp.float32), has_previous


class NextGap(nn.Module):
    """Items, calendar and previous gaps -> RNN -> log1p(hours to the next event) at every position."""

    num_items: int
    max_length: int
    item_rows: int
    hidden: int = 32
    state: int = 64
    num_layers: int = 1
    cell: str = "gru"
    time_features: int = 8
    dropout: float = 0.1

    def setup(self):
        self.item_embedding = item_embedding(self.item_rows, self.hidden)
        self.calendar = CalendarEmbedding(self.hidden)
        # Fixed frequencies (seconds to decades): learnt ones get gradients scaled by gaps of up to
        # 1e7 s, which dominate the global norm and, clipped, stall every other parameter.
        self.gap_encoding = FunctionalTimeEncoding(self.time_features, learnable=False)
        self.input_projection = nn.Dense(self.hidden)
        self.input_dropout = nn.Dropout(self.dropout)
        self.rnn = RNN(cell=self.cell, hidden=self.state, num_layers=self.num_layers, dropout=self.dropout,
                       forget_bias=1.0 if self.cell == "lstm" else 0.0)
        self.head_hidden = nn.Dense(self.hidden)
        # Zero-initialised output: training starts from the median gap of the training pairs.
        self.head_output = nn.Dense(1, kernel_init=nn.initializers.zeros)

    def states(self, items, timestamps, week_phase=0, deterministic: bool = True):
        """items, timestamps: int32[B, T] (left-padded; relative seconds) -> RNN outputs float[B, T, S]."""
        padding = items > 0
        gaps, has_previous = previous_gaps(items, timestamps)  # [B, T]
        features = jnp.concatenate([
            self.item_embedding(items),
            self.calendar(timestamps + jnp.asarray(week_phase, jnp.int32)),
            self.gap_encoding(gaps) * has_previous[..., None],
            log_hours(gaps)[..., None],
            has_previous[..., None].astype(jnp.float32),
        ], axis=-1)  # [B, T, 2D + F + 2]
        x = nn.gelu(self.input_projection(features))
        x = self.input_dropout(x, deterministic=deterministic) * padding[..., None]
        outputs, _ = self.rnn(x, padding, deterministic)
        return outputs

    def __call__(self, items, timestamps, week_phase=0, median_log_gap=0.0, deterministic: bool = True):
        """-> predicted log1p(hours to the next event) at every position, float32[B, T]."""
        outputs = self.states(items, timestamps, week_phase, deterministic)
        correction = self.head_output(nn.gelu(self.head_hidden(outputs)))[..., 0]
        return (jnp.asarray(median_log_gap, jnp.float32) + correction).astype(jnp.float32)


def make(config, info) -> nn.Module:
    return NextGap(num_items=info.num_items, max_length=info.max_length, item_rows=info.item_rows,
                   hidden=config.hidden, state=config.state, num_layers=config.num_layers, cell=config.cell,
                   time_features=config.time_features, dropout=config.dropout)


def make_context(prepared, info, config) -> dict:
    """week_phase: int32, the time origin modulo a week; median_log_gap: float32, the median of
    log1p(hours to the next event) over the training pairs (the positions the loss reads)."""
    train = prepared.sequences.train
    gaps = (train["target_times"] - train["timestamps"])[train["targets"] > 0]
    median = float(np.median(np.log1p(gaps / HOUR))) if len(gaps) else 0.0
    return {"week_phase": np.asarray(prepared.sequences.time_origin % WEEK, np.int32),
            "median_log_gap": np.asarray(median, np.float32)}


def _apply(module, variables, batch, context, **kwargs):
    context = context or {}
    return module.apply(variables, batch["items"], batch["timestamps"], context.get("week_phase", 0),
                        context.get("median_log_gap", 0.0), **kwargs)


def init(module, rng, batch, *, context=None):
    context = context or {}
    return module.init(rng, batch["items"], batch["timestamps"], context.get("week_phase", 0),
                       context.get("median_log_gap", 0.0))


def losses(module, variables, batch, *, rng, step, context, config):
    """Mean |predicted - true| of log1p(hours to the next event) over the positions with a target."""
    predicted = _apply(module, variables, batch, context, deterministic=False, rngs={"dropout": rng})  # [B, T]
    true = log_hours(jnp.maximum(batch["target_times"] - batch["timestamps"], 0))
    valid = (batch["targets"] > 0) * batch["weights"][:, None]
    count = valid.sum()
    loss = jnp.sum(jnp.abs(predicted - true) * valid) / jnp.maximum(count, 1.0)
    return {"model": loss}, {"targets": count}


def predict(module, variables, batch, *, context=None, scoring=None):
    """Hours from each user's last history event to the next event, float32[B] (>= 0)."""
    predicted = _apply(module, variables, batch, context, deterministic=True)[:, -1]
    return jnp.expm1(jnp.maximum(predicted, 0.0))


def encode(module, variables, batch, *, context=None, scoring=None):
    """User vectors: the RNN output at the last position, float[B, S]."""
    context = context or {}
    return module.apply(variables, batch["items"], batch["timestamps"], context.get("week_phase", 0),
                        method="states")[:, -1]


def example_scores(module, variables, batch, *, context=None, config=None):
    """Each row's summed L1 of log1p hours over its targets and its number of targets, without
    dropout (sum(loss) / sum(targets) is the batch loss). -> {"loss": float[B], "targets": float[B]}"""
    predicted = _apply(module, variables, batch, context, deterministic=True)
    true = log_hours(jnp.maximum(batch["target_times"] - batch["timestamps"], 0))
    valid = (batch["targets"] > 0) * batch["weights"][:, None]
    return {"loss": jnp.sum(jnp.abs(predicted - true) * valid, axis=1), "targets": valid.sum(axis=1)}


def engine_defaults(config) -> None:
    """The engine keys this model needs (`ModelSpec.engine_defaults`, applied by base_config).
    NOTE from the lead: this replaces the `eval_defaults` field; the hook now exists in base.py/config.py."""
    config.eval.evaluators = ("next_event",)
    config.eval.metric = "mae_hours"


SPEC = ModelSpec("next_gap", default_config, make, losses, score=None, init=init, predict=predict, encode=encode,
                 example_scores=example_scores, make_context=make_context, engine_defaults=engine_defaults)

