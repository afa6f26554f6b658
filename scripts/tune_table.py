"""A table whose every row is converged and tuned alike: a fixed validation grid per model, early
stopping, then 3 seeds of each model's chosen setting, on both next-item protocols.

    python scripts/tune_table.py --data foursquare --models popularity,sasrec,tisasrec,gru4rec,lightgcn,lstm_gat,tgat,fusion
    python scripts/tune_table.py --data ml1m --models sasrec,lightgcn,lstm_gat,tgat,fusion \\
        --override=--config.data.max_length=50 --override=--config.data.window=last

Each trial is `stjax train --config experiments/MODEL_DATA.py[:VARIANT]` in its own run folder
under --out (a finished trial is read back, an interrupted one resumes: rerun the same command),
with `--config.train.num_epochs=EPOCHS` as a budget that early stopping should end (the table
says for every run whether it did, and after how many epochs). The grid is the same for every
model, fixed before any test number was read: the learning rate in {1e-3, 3e-3} x the model's
regulariser (`model.dropout` in {0.2, 0.5}, or `model.reg_weight` in {1e-4, 1e-3} for a model
without dropout); a model with neither (popularity) has one trial. The chosen trial is the best
validation `eval.metric`; it then runs with --seeds more seeds, and every run of the chosen
setting is also ranked against all items (`stjax evaluate --all-items`: revisits count, the
next-POI protocol). Test metrics are reported as mean and sample standard deviation over the
seeds; test is never read to choose. Writes --out/table.json and prints the markdown table.
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
LEARNING_RATES = ("1e-3", "3e-3")
REGULARISERS = {"dropout": ("0.2", "0.5"), "reg_weight": ("1e-4", "1e-3")}
METRICS = ("hr@1", "hr@5", "hr@10", "hr@20", "mrr@20", "ndcg@10")


def model_keys(experiment: str) -> set[str]:
    """The model section's keys of an experiment (to pick the regulariser the grid varies)."""
    sys.path.insert(0, str(ROOT))
    from stjax.config import load_config

    return set(load_config(experiment, []).model.keys())


def grid(experiment: str) -> dict[str, list[str]]:
    """Trial name -> --config overrides."""
    keys = model_keys(experiment)
    regulariser = next((name for name in REGULARISERS if name in keys), None)
    if regulariser is None and "hidden" not in keys:  # nothing to tune (popularity)
        return {"default": []}
    trials = {}
    for lr in LEARNING_RATES:
        for value in REGULARISERS[regulariser] if regulariser else (None,):
            name = f"lr{lr}" + (f"-{regulariser}{value}" if regulariser else "")
            trials[name] = [f"--config.train.learning_rate={lr}"] + (
                [f"--config.model.{regulariser}={value}"] if regulariser else [])
    return trials


def train(experiment: str, workdir: Path, overrides: list[str], epochs: int, stjax: str) -> dict:
    results = workdir / "results.json"
    if not results.exists():
        workdir.parent.mkdir(parents=True, exist_ok=True)
        with open(workdir.parent / f"{workdir.name}.log", "a") as log:
            subprocess.run([stjax, "train", "--config", experiment, "--workdir", str(workdir), "--no-progress",
                            f"--config.train.num_epochs={epochs}", *overrides], check=True, stdout=log,
                           stderr=subprocess.STDOUT, cwd=ROOT)
    return json.loads(results.read_text())


def all_items(workdir: Path, stjax: str) -> dict:
    """The run's best checkpoint ranked against every item (history included), read back when done."""
    path = workdir / "all_items.json"
    if not path.exists():
        done = subprocess.run([stjax, "evaluate", "--workdir", str(workdir), "--all-items"], check=True,
                              capture_output=True, text=True, cwd=ROOT)
        path.write_text(done.stdout.strip().splitlines()[-1])
    return json.loads(path.read_text())


def summary(runs: list[dict], part: str = "test") -> dict:
    out = {}
    for name in METRICS:
        values = [run[part][name] for run in runs if name in run.get(part, {})]
        if values:
            out[name] = {"mean": statistics.mean(values),
                         "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="The experiments' suffix: MODEL_DATA.py (foursquare, ml1m, ...).")
    parser.add_argument("--models", required=True, help="Comma-separated model names.")
    parser.add_argument("--variant", default="", help="An experiment variant (e.g. tiny, for tests).")
    parser.add_argument("--epochs", type=int, default=300, help="The budget early stopping should end.")
    parser.add_argument("--seeds", type=int, default=2, help="Seeds beyond the config's for the chosen trial.")
    parser.add_argument("--override", action="append", default=[], help="An extra --config.KEY=VALUE for every run.")
    parser.add_argument("--out", default="runs/table")
    parser.add_argument("--stjax", default=str(ROOT / ".venv" / "bin" / "stjax"))
    args = parser.parse_args()
    out = Path(args.out) / args.data
    rows = {}
    for model in args.models.split(","):
        experiment = f"experiments/{model}_{args.data}.py" + (f":{args.variant}" if args.variant else "")
        trials = {}
        for name, overrides in grid(experiment).items():
            result = train(experiment, out / model / name, [*args.override, *overrides], args.epochs, args.stjax)
            trials[name] = {"overrides": overrides, "valid": result["valid"][result["config"]["eval"]["metric"]],
                            "epochs": result["epochs"], "stopped_early": result["stopped_early"]}
            print(f"{model} {name}: valid {trials[name]['valid']:.4f} ({result['epochs']} epochs, "
                  f"stopped early: {result['stopped_early']})", flush=True)
        chosen = max(trials, key=lambda name: trials[name]["valid"])
        folders = [out / model / chosen] + [out / model / f"{chosen}-seed{seed}" for seed in range(1, args.seeds + 1)]
        runs = [train(experiment, folder, [*args.override, *trials[chosen]["overrides"]]
                      + ([f"--config.seed={index}"] if index else []), args.epochs, args.stjax)
                for index, folder in enumerate(folders)]
        everything = [all_items(folder, args.stjax) for folder in folders]
        rows[model] = {"trials": trials, "chosen": chosen, "seeds": len(runs),
                       "epochs": [run["epochs"] for run in runs],
                       "stopped_early": [run["stopped_early"] for run in runs],
                       "train_s": [run["timings"]["train_s"] for run in runs],
                       "test": summary(runs), "test_all_items": summary(everything)}
    table = {"command": " ".join(["scripts/tune_table.py", *sys.argv[1:]]), "machine": machine(),
             "grid": {"learning_rate": LEARNING_RATES, "regularisers": REGULARISERS}, "rows": rows}
    (out / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    print("| model | chosen | masked NDCG@10 | masked Acc@10 | all venues NDCG@10 | all venues Acc@10 | epochs | "
          "stopped early |")
    print("|---|---|---:|---:|---:|---:|---|---|")
    def cell(row, part, name):
        value = row[part].get(name)
        return f"{value['mean']:.4f} ± {value['std']:.4f}" if value else "-"

    for model, row in rows.items():
        print(f"| {model} | {row['chosen']} | {cell(row, 'test', 'ndcg@10')} | {cell(row, 'test', 'hr@10')} | "
              f"{cell(row, 'test_all_items', 'ndcg@10')} | {cell(row, 'test_all_items', 'hr@10')} | "
              f"{', '.join(f'{e:g}' for e in row['epochs'])} | {sum(row['stopped_early'])}/{row['seeds']} |")
    print(f"wrote {out / 'table.json'}")


if __name__ == "__main__":
    main()
