"""forecast_transformer on foursquare-nyc: a transformer forecaster of daily behaviour volume, one fold of the backtest.

    stjax train --config experiments/forecast_transformer_foursquare.py --workdir runs/forecast_transformer_foursquare
    stjax train --config experiments/forecast_transformer_foursquare.py:tiny --workdir /tmp/forecast_transformer_foursquare-tiny   # test-sized

The panel is `stjax.data.series`' (the same as `stjax analyze forecast --data foursquare-nyc`); the test is
the last data.series_horizon days (data.series_cutoff=0; a negative value moves it back). The
whole backtest (8 folds, beside statsforecast's baselines) is

    stjax analyze forecast --data foursquare-nyc --neural forecast_transformer --out runs/forecast/foursquare-nyc

Result: the README's forecasting table (from forecast.json of that command).
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("forecast_transformer", source="foursquare-nyc")  # the forecaster defaults (engine_defaults)
    return variant(config, arg)
