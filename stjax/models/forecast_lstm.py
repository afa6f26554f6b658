"""A global LSTM forecaster of daily behaviour volume: an LSTM (`stjax.layers.RNN`) reads the
window's days (`stjax.models.shared_series.SeriesInputs`), its last state is the summary from
which the quantile head forecasts the next h days (DeepAR-style inputs, quantile outputs; trained
by the pinball loss on every window of every series of the panel). Batches: `series`.
"""

from __future__ import annotations

import flax.linen as nn

from stjax.layers import RNN
from stjax.models.base import ModelSpec, config_keys, integer
from stjax.models.shared_series import (
    QuantileHead,
    SeriesInputs,
    default_config,
    forecaster_defaults,
    series_encode,
    series_init,
    series_losses,
    series_predict,
)


class ForecastLSTM(nn.Module):
    num_series: int
    horizon: int
    hidden: int = 32
    num_layers: int = 1
    dropout: float = 0.1

    def setup(self):
        self.inputs = SeriesInputs(self.hidden, self.num_series)
        self.rnn = RNN("lstm", self.hidden, self.num_layers, forget_bias=1.0, dropout=self.dropout)
        self.head = QuantileHead(self.hidden, self.horizon, self.dropout)

    def summary(self, batch, deterministic: bool = True):
        outputs, _ = self.rnn(self.inputs(batch), batch["observed"] > 0, deterministic=deterministic)
        return outputs[:, -1]

    def __call__(self, batch, deterministic: bool = True):
        return self.head(self.summary(batch, deterministic), batch, deterministic)


def make(config, info) -> nn.Module:
    return ForecastLSTM(num_series=info.num_users, horizon=info.horizon, hidden=config.hidden,
                        num_layers=config.num_layers, dropout=config.dropout)


SPEC = ModelSpec("forecast_lstm", lambda: default_config("forecast_lstm", num_layers=1), make, series_losses,
                 batch_kind="series", init=series_init, predict=series_predict, encode=series_encode,
                 engine_defaults=forecaster_defaults, config_checks=config_keys({"num_layers": integer(1)}))
