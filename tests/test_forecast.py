"""Forecasting behaviour volume (`stjax.analysis.forecast`, `stjax analyze forecast`): the panels'
definitions against loops, the folds and the metrics against NumPy, a fold that never sees its
future, statsforecast's seasonal naive against NumPy's, and the command with its report section."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import stjax.analysis.forecast as forecasting
from stjax.analysis.forecast import (
    ForecastError,
    backtest,
    folds,
    panel,
    scores,
    statistical_forecasts,
)
from stjax.cli import main
from stjax.data.table import make_log


def test_folds_step_by_the_horizon_and_end_at_the_end():
    assert folds(100, 7, 8) == [44, 51, 58, 65, 72, 79, 86, 93]
    with pytest.raises(ForecastError, match="too few"):
        folds(60, 7, 8)


def test_scores_equal_numpy_loops():
    actual = np.array([3.0, 0.0, 5.0, 2.0])
    forecast = np.array([2.0, 0.0, 7.0, 1.0])
    history = np.array([1.0, 2, 3, 4, 5, 6, 7, 2, 2, 4, 4, 6, 6, 8])
    got = scores(actual, forecast, history, season=7)
    naive = sum(abs(history[t] - history[t - 7]) for t in range(7, len(history))) / (len(history) - 7)
    terms = [0.0 if a == f == 0 else 2 * abs(a - f) / (abs(a) + abs(f)) for a, f in zip(actual, forecast)]
    assert got["mae"] == pytest.approx(np.mean(np.abs(actual - forecast)))
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((actual - forecast) ** 2)))
    assert got["smape"] == pytest.approx(sum(terms) / 4)
    assert got["mase"] == pytest.approx(got["mae"] / naive)


def test_no_fold_sees_its_future(monkeypatch):
    seen = []

    def last_value(train, horizon, models, season):  # a stand-in model: repeat the last training day
        seen.append(train.copy())
        mean = np.repeat(train[:, -1:], horizon, axis=1)
        return {"Last": {"mean": mean, "lo-80": mean - 1, "hi-80": mean + 1, "lo-95": mean - 2, "hi-95": mean + 2}}

    monkeypatch.setattr(forecasting, "statistical_forecasts", last_value)
    values = np.arange(2 * 60, dtype=float).reshape(2, 60)
    result = backtest(values, horizon=7, count=3, models=("Last",))
    assert [train.shape[1] for train in seen] == result["cutoffs"] == [39, 46, 53]
    for train, cutoff in zip(seen, result["cutoffs"]):
        np.testing.assert_array_equal(train, values[:, :cutoff])
    # Against a loop: the forecast of day c + j is the value of day c - 1, so MAE = mean(j + 1).
    assert result["models"]["Last"]["mae"] == pytest.approx(np.mean(np.arange(1, 8)))
    assert result["models"]["Last"]["coverage-95"] == pytest.approx(2 / 7)


def test_statsforecast_baselines_on_a_tiny_panel():
    rng = np.random.default_rng(0)
    week = np.array([5.0, 6, 7, 8, 9, 20, 22])
    train = np.stack([np.tile(week, 6) + rng.normal(0, 0.5, 42), np.tile(week[::-1], 6)])
    out = statistical_forecasts(train, 7, ("SeasonalNaive", "AutoETS"), season=7)
    np.testing.assert_allclose(out["SeasonalNaive"]["mean"], train[:, -7:], rtol=1e-6)  # the last week again
    for name in ("SeasonalNaive", "AutoETS"):
        entry = out[name]
        assert entry["mean"].shape == (2, 7)
        assert (entry["lo-95"] <= entry["lo-80"] + 1e-9).all() and (entry["lo-80"] <= entry["mean"] + 1e-9).all()
        assert (entry["mean"] <= entry["hi-80"] + 1e-9).all() and (entry["hi-80"] <= entry["hi-95"] + 1e-9).all()
    with pytest.raises(ForecastError, match="unknown Prophet"):
        statistical_forecasts(train, 7, ("Prophet",))


def test_panels_count_what_they_define():
    day = 86_400
    start_2001 = int(np.datetime64("2001-01-01", "D").astype(np.int64)) * day
    log = make_log(["a", "a", "b", "b", "c"], ["m1", "m2", "m1", "m3", "m2"],
                   [start_2001 - day, start_2001 + 10, start_2001 + day + 5, start_2001 + day + 9, start_2001 + 2 * day],
                   value=[5, 4, 3, 2, 1])
    log.items = {"genres": np.asarray(["", "Action|Drama", "Drama", "Comedy"], dtype=object)}
    built = panel(log, "ml-1m")
    assert built["names"] == ["Action", "Comedy", "Drama"]
    # Day 0 = 2001-01-01: m2 (Drama); day 1: m1 (Action, Drama) and m3 (Comedy); day 2: m2. The 2000 rating is out.
    np.testing.assert_array_equal(built["values"], [[0, 1, 0], [0, 1, 0], [1, 1, 1]])
    check = make_log(["u", "u", "u", "v"], ["x", "x", "y", "y"], [100, 100, day + 100, 2 * day + 50],
                     region=["r1", "r1", "r1", "r2"])
    built = panel(check, "foursquare-nyc", min_events=1)
    assert built["names"] == ["r1", "r2"] and "1 of 4" in built["definition"]  # one exact duplicate
    # Whole 1,440-minute periods from the first check-in (t = 100): 2 days + 50 s is in period 1.
    np.testing.assert_array_equal(built["values"], [[1, 1], [0, 1]])


def test_cli_writes_forecasts_and_their_figures_from_the_report_section(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["analyze", "forecast", "--data", "synthetic", "--models", "SeasonalNaive",
                                  "--neural", "", "--folds", "2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    output = json.loads((tmp_path / "out" / "forecast.json").read_text())
    assert output["cutoffs"] == [364 - 14, 364 - 7] and output["best_by_mase"] == "SeasonalNaive"
    assert len(output["series"]) == 8 and sorted(p.name for p in (tmp_path / "out").glob("forecast-*.png")) == [
        "forecast-1.png", "forecast-2.png", "forecast-3.png"]
    result = runner.invoke(main, ["analyze", "forecast", "--data", "synthetic", "--models", "Prophet",
                                  "--neural", "", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown Prophet" in result.output


# ----------------------------------------------------------------------------- the engine's forecasters


def test_windows_are_slices_of_the_panel_and_never_reach_the_cutoff():
    from stjax.data.series import DAY, LAGS, series_data

    rng = np.random.default_rng(0)
    values = rng.integers(0, 50, (3, 100)).astype(float)
    built = {"names": ["a", "b", "c"], "values": values, "first_day": 0, "day_unit": "days", "definition": "test"}
    data = series_data(built, cutoff=80, horizon=7, length=28)
    np.testing.assert_allclose(data.scale, np.maximum(values[:, :73].mean(axis=1), 1.0))  # days before c - h only
    scaled = values / data.scale[:, None]
    train = data.train
    assert len(train["users"]) == 3 * (80 - 14 - 14 + 1)  # starts 14 .. c - 2h, every series
    assert int(train["target_times"].max()) // DAY == 72  # the last training target is day c - h - 1
    for row in rng.choice(len(train["users"]), 25, replace=False):
        s = int(train["users"][row])
        t = int(train["target_times"][row, 0]) // DAY
        for j in range(28):  # inputs: days t - 28 .. t - 1, zero and unobserved before day 0
            day = t - 28 + j
            assert train["observed"][row, j] == (day >= 0)
            assert train["inputs"][row, j] == pytest.approx(scaled[s, day] if day >= 0 else 0.0)
        np.testing.assert_allclose(train["targets"][row], scaled[s, t:t + 7], rtol=1e-6)
        for j in range(7):
            for k in range(1, LAGS + 1):
                day = t + j - 7 * k
                assert train["lags"][row, j, k - 1] == pytest.approx(scaled[s, day] if day >= 0 else 0.0)
    assert (data.valid["target_times"][:, 0] // DAY == 73).all() and (data.test["target_times"][:, 0] // DAY == 80).all()
    np.testing.assert_allclose(data.test["targets"] * data.scale[:, None], values[:, 80:87], rtol=1e-6)
    np.testing.assert_array_equal(data.history("valid"), values[:, :73])
    with pytest.raises(ValueError, match="run past its end"):
        series_data(built, cutoff=95, horizon=7, length=28)


@pytest.fixture(scope="module")
def trained_forecaster(tmp_path_factory):
    """forecast_lstm trained by the engine on the synthetic panel (8 regions x 364 days)."""
    from stjax.config import base_config
    from stjax.train import train_and_evaluate

    config = base_config("forecast_lstm")
    config.data.synthetic_events = 60_000
    config.train.num_epochs = 12
    config.train.eval_every_epochs = 3
    workdir = tmp_path_factory.mktemp("forecaster")
    return config, workdir, train_and_evaluate(config, workdir, log=lambda m: None, progress=False)


def test_the_forecast_evaluator_scores_like_the_backtest(trained_forecaster):
    from stjax.data.pipeline import load_source
    from stjax.runs import RunFolder

    config, workdir, results = trained_forecaster
    rows = RunFolder(workdir).rows()
    built = panel(load_source(config.data)[0], "synthetic")
    cutoff = built["values"].shape[1] - 7
    np.testing.assert_allclose(rows["actual"], built["values"][:, cutoff:], rtol=1e-5)
    per_series = [scores(built["values"][s, cutoff:], rows["mean"][s], built["values"][s, :cutoff])
                  for s in range(len(built["names"]))]  # the backtest's scoring, on the evaluator's forecasts
    for metric in ("mae", "rmse", "smape", "mase"):
        assert results["test"][metric] == pytest.approx(np.mean([row[metric] for row in per_series]), rel=1e-5)
    inside = (rows["actual"] >= rows["lo-95"]) & (rows["actual"] <= rows["hi-95"])
    assert results["test"]["coverage-95"] == pytest.approx(inside.mean())
    assert (rows["lo-95"] <= rows["lo-80"]).all() and (rows["lo-80"] <= rows["mean"]).all()
    assert (rows["mean"] <= rows["hi-80"]).all() and (rows["hi-80"] <= rows["hi-95"]).all()
    assert results["timings"]["train_step_compiles"] == 1


def test_the_forecaster_finds_the_planted_weekly_rhythm(trained_forecaster):
    from stjax.data.pipeline import load_source
    from stjax.data.synthetic import WEEKDAY
    from stjax.runs import RunFolder

    config, workdir, results = trained_forecaster
    rows = RunFolder(workdir).rows()
    built = panel(load_source(config.data)[0], "synthetic")
    cutoff = built["values"].shape[1] - 7
    # The generator draws day d with weight WEEKDAY[(d + 6) % 7] (2023-01-01, its day 0, was a Sunday).
    planted = WEEKDAY[(np.arange(cutoff, cutoff + 7) + 6) % 7]
    forecast = rows["mean"].sum(axis=0)
    assert np.corrcoef(planted, forecast)[0, 1] >= 0.9, (planted, forecast)
    # And it forecasts better than repeating the last week (seasonal naive), on the same test week.
    naive = [scores(built["values"][s, cutoff:], built["values"][s, cutoff - 7:cutoff], built["values"][s, :cutoff])
             for s in range(len(built["names"]))]
    assert results["test"]["mase"] < 0.9 * np.mean([row["mase"] for row in naive])


def test_cli_backtests_the_engine_forecasters_and_reuses_finished_folds(tmp_path):
    runner = CliRunner()
    arguments = ["analyze", "forecast", "--data", "synthetic", "--models", "SeasonalNaive", "--neural", "forecast_lstm",
                 "--folds", "2", "--out", str(tmp_path / "out"), "--config.train.num_epochs=1",
                 "--config.data.synthetic_events=20000"]
    result = runner.invoke(main, arguments)
    assert result.exit_code == 2 and "data.synthetic_events" in result.output  # the panel is the analysis' own
    arguments = arguments[:-1]
    result = runner.invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert result.output.count("training fold") == 2
    output = json.loads((tmp_path / "out" / "forecast.json").read_text())
    assert set(output["models"]) == {"SeasonalNaive", "forecast_lstm"} and output["engine"] == ["forecast_lstm"]
    assert [fold["epochs"] for fold in output["engine_folds"]["forecast_lstm"]] == [1.0, 1.0]
    for fold, cutoff in enumerate(output["cutoffs"]):  # each fold's run tested on the fold's own week
        saved = json.loads((tmp_path / "out" / "runs" / "forecast_lstm" / f"fold-{fold}" / "config.json").read_text())
        assert saved["data"]["series_cutoff"] == cutoff
    again = runner.invoke(main, arguments)
    assert again.exit_code == 0 and "training fold" not in again.output
    assert json.loads((tmp_path / "out" / "forecast.json").read_text())["models"] == output["models"]
    bad = runner.invoke(main, ["analyze", "forecast", "--data", "synthetic", "--neural", "sasrec"])
    assert bad.exit_code == 2 and "not a forecaster" in bad.output
