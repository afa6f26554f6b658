"""A validation grid for stjax's forecasters on one panel, then seeds of the chosen setting.

    python scripts/tune_forecasters.py --data foursquare-nyc --model forecast_lstm --out runs/forecast_tune

Each trial is `stjax analyze forecast --data D --models '' --neural MODEL` with the trial's
--config overrides (the same 8 folds x 7 days as the README's table), in its own folder under
--out (finished folds are read back, so the script resumes). A trial is scored by its mean
validation MASE over the folds (each fold's validation week is the 7 days before its cutoff: the
test weeks are not read to choose). The chosen trial is then run with --seeds more seeds, and the
test MASE is reported as mean and sample standard deviation over all its seeds. Writes
--out/DATA-MODEL.json.

The grid (GRID) is the same for every model and panel, fixed before any test number was read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STJAX = ROOT / ".venv" / "bin" / "stjax"
GRID = {  # name -> overrides; "default" is the engine_defaults setting of the README's table
    "default": [],
    "dropout0.3": ["--config.model.dropout=0.3"],
    "hidden64-dropout0.3-lr1e-3": ["--config.model.hidden=64", "--config.model.dropout=0.3",
                                   "--config.train.learning_rate=1e-3"],
    "hidden16": ["--config.model.hidden=16"],
}


def trial(data: str, model: str, out: Path, overrides: list[str]) -> dict:
    """One backtest of `model` with `overrides`: mean validation and test metrics over the folds."""
    report = out / "forecast.json"
    if not report.exists():
        subprocess.run([str(STJAX), "analyze", "forecast", "--data", data, "--models", "", "--neural", model,
                        "--runs", str(out / "runs"), "--out", str(out), *overrides], check=True,
                       stdout=subprocess.DEVNULL)
    folds = sorted((out / "runs" / model).glob("fold-*/results.json"))
    results = [json.loads(path.read_text()) for path in folds]
    test = json.loads(report.read_text())["models"][model]
    return {"overrides": overrides, "folds": len(results),
            "valid_mase": statistics.mean(r["valid"]["mase"] for r in results),
            "epochs": [r["epochs"] for r in results], "stopped_early": all(r["stopped_early"] for r in results),
            "train_s": round(sum(r["timings"]["train_s"] for r in results), 1),
            "test": {name: test[name] for name in ("mae", "rmse", "smape", "mase", "coverage-80", "coverage-95")
                     if name in test}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="forecast_lstm")
    parser.add_argument("--out", default="runs/forecast_tune")
    parser.add_argument("--seeds", type=int, default=2, help="Seeds run beyond the default seed for the chosen trial.")
    args = parser.parse_args()
    out = Path(args.out) / f"{args.data}-{args.model}"
    trials = {name: trial(args.data, args.model, out / name, overrides) for name, overrides in GRID.items()}
    for name, record in trials.items():
        print(f"{name}: valid MASE {record['valid_mase']:.4f}, test MASE {record['test']['mase']:.4f}", flush=True)
    chosen = min(trials, key=lambda name: trials[name]["valid_mase"])
    seeds = {"default": trials[chosen]}
    for seed in range(1, args.seeds + 1):
        seeds[f"seed{seed}"] = trial(args.data, args.model, out / f"{chosen}-seed{seed}",
                                     [*GRID[chosen], f"--config.seed={seed}"])
    mase = [record["test"]["mase"] for record in seeds.values()]
    summary = {"data": args.data, "model": args.model, "grid": GRID, "trials": trials, "chosen": chosen,
               "seeds": seeds, "test_mase_mean": statistics.mean(mase),
               "test_mase_std": statistics.stdev(mase) if len(mase) > 1 else 0.0, "machine": machine(),
               "command": " ".join(sys.argv)}
    (Path(args.out) / f"{args.data}-{args.model}.json").write_text(json.dumps(summary, indent=2))
    print(f"chosen {chosen}: test MASE {summary['test_mase_mean']:.4f} ± {summary['test_mase_std']:.4f} "
          f"over {len(mase)} seeds")


if __name__ == "__main__":
    main()
