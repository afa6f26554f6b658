"""A global transformer forecaster of daily behaviour volume: bidirectional self-attention
(`stjax.layers.TransformerBlock`, pre-LN) over the window's days (`SeriesInputs` plus learned
positions), the last day's output is the summary from which the quantile head forecasts the next
h days; trained by the pinball loss on every window of every series of the panel. Batches: `series`.
"""

from __future__ import annotations

import flax.linen as nn

from stjax.layers import PositionEmbedding, TransformerBlock
from stjax.models.base import ModelSpec, config_keys
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


class ForecastTransformer(nn.Module):
    num_series: int
    horizon: int
    max_length: int
    hidden: int = 32
    num_blocks: int = 2
    num_heads: int = 2
    mlp_ratio: int = 2
    dropout: float = 0.1

    def setup(self):
        self.inputs = SeriesInputs(self.hidden, self.num_series)
        self.positions = PositionEmbedding(self.max_length)
        self.blocks = [TransformerBlock(self.num_heads, self.hidden * self.mlp_ratio, self.dropout, self.dropout,
                                        causal=False, pre_norm=True) for _ in range(self.num_blocks)]
        self.norm = nn.LayerNorm()
        self.head = QuantileHead(self.hidden, self.horizon, self.dropout)

    def summary(self, batch, deterministic: bool = True):
        padding = batch["observed"] > 0
        x = self.positions(self.inputs(batch))
        for index, block in enumerate(self.blocks):
            x, _ = block(x, padding, deterministic, last_only=index == len(self.blocks) - 1)
        return self.norm(x[:, -1])

    def __call__(self, batch, deterministic: bool = True):
        return self.head(self.summary(batch, deterministic), batch, deterministic)


def make(config, info) -> nn.Module:
    return ForecastTransformer(num_series=info.num_users, horizon=info.horizon, max_length=info.max_length,
                               hidden=config.hidden, num_blocks=config.num_blocks, num_heads=config.num_heads,
                               mlp_ratio=config.mlp_ratio, dropout=config.dropout)


SPEC = ModelSpec("forecast_transformer",
                 lambda: default_config("forecast_transformer", num_blocks=2, num_heads=2, mlp_ratio=2), make,
                 series_losses, batch_kind="series", init=series_init, predict=series_predict, encode=series_encode,
                 engine_defaults=forecaster_defaults, config_checks=config_keys())
