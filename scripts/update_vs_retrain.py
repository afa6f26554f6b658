"""`stjax update` against retraining from scratch, on ML-1M and Foursquare NYC split by time.

    python scripts/update_vs_retrain.py --out runs/update_vs_retrain            # ML-1M and Foursquare NYC
    python scripts/update_vs_retrain.py --datasets synthetic --epochs 2 --out /tmp/uvr   # a smoke run

Each data set's events are cut by time into a base (the first `--base` share) and `--increments`
equal later periods. SASRec (the data set's experiment config, `--epochs` epochs) is trained on the
base. Then for each increment k but the last: (a) the update chain takes increment k (`update_run`,
`--update-epochs` epochs of its training rows, the run's learning rate restarted), and (b) a run is
trained from scratch on the base and increments 1..k (the same config and epochs as the base).
Both are ranked on increment k+1, the following period, by the same evaluator
(`stjax.train.update.evaluate_following`: every known user's whole history as input, their distinct
items in the period as targets, full ranking, history items masked). Also recorded: the run before
the update on the same period (its new rows untrained), and the wall time of (a) and (b).

Resumable: a finished run (base, each update, each retrain) is read back from `--out`, not redone; an
interrupted training resumes from its last checkpoint (its wall time is then that of the last part:
`resumed` says so), an interrupted update starts again from the chain's last finished update.
Writes `--out/results.json` (and the machine it ran on).

Measured (2 shared AMD EPYC cores, load 5-7; --epochs 4 --update-epochs 4: far below the
experiments' 200/20 epochs, so every model is under-trained and the update, which has seen the
base for 4 epochs and the new events for 4 more, is favoured), NDCG@10 / HR@10 on the following
period, wall seconds:
  ML-1M (--rounds 1), increment 1 -> ranked on increment 2 (523 known users): update 0.1270 / 0.3996
    in 208 s; retrain 0.1252 / 0.3843 in 794 s.
  Foursquare NYC, increment 1 -> 2 (841 users): update 0.1572 / 0.5553 in 59 s; retrain 0.1222 /
    0.4958 in 114 s; increment 2 -> 3 (797 users): update 0.1900 / 0.5797 in 62 s; retrain 0.1420 /
    0.4981 in 102 s.
At converged budgets (--epochs 200 --update-epochs 200: every run stopped early), Foursquare NYC,
2026-12-03, load 5-17: increment 1 -> 2: update 0.5290 / 0.8704 (18 epochs, 335 s), retrain 0.5727 /
0.8954 (68 epochs, 2,298 s); 2 -> 3: update 0.5449 / 0.8770 (30 epochs, 161 s), retrain 0.5887 /
0.8959 (62 epochs, 1,261 s). ML-1M at the graph table's CPU protocol:
    python scripts/update_vs_retrain.py --datasets ml-1m --epochs 200 --update-epochs 200 \
      --out runs/uvr_converged_ml1m --override=--config.data.max_length=50 \
      --override=--config.data.window=last --override=--config.train.eval_every_epochs=10
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine  # noqa: E402

from stjax.config import load_config  # noqa: E402
from stjax.data.pipeline import load_source  # noqa: E402
from stjax.runs import RunFolder  # noqa: E402
from stjax.train import train_and_evaluate  # noqa: E402
from stjax.train.update import evaluate_following, update_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = {"ml-1m": "sasrec_ml1m.py", "foursquare-nyc": "sasrec_foursquare.py", "synthetic": "sasrec_synthetic.py"}
SHOWN = ("ndcg@10", "hr@10")


def periods(name: str, base: float, increments: int, data_dir: str) -> list:
    """The data set's log cut by event time into the base and `increments` equal later periods."""
    small = {"synthetic_users": 300, "synthetic_items": 200, "synthetic_events": 15_000} if name == "synthetic" else {}
    log, _, _ = load_source({"source": name, "data_dir": data_dir} | small, log=lambda m: None)
    order = np.argsort(log.timestamp, kind="stable")
    cuts = [int(len(order) * base)] + [int(len(order) * (base + (1 - base) * k / increments))
                                       for k in range(1, increments)]
    return [log.select(np.sort(rows)) for rows in np.split(order, cuts)]


def write_events(logs: list, path: Path) -> Path:
    """Parquet of the events of `logs` (original ids; stjax reads it back with the canonical columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        pq.write_table(pa.concat_tables([log.to_arrow() for log in logs]), path)
    return path


def config_for(name: str, source: Path, epochs: int, overrides: list[str]):
    config = load_config(str(ROOT / "experiments" / EXPERIMENTS[name]),
                         [f"--config.data.source={source}", "--config.data.format=parquet",
                          f"--config.train.num_epochs={epochs}", *overrides])
    return config


def shown(metrics: dict | None) -> dict | None:
    return None if metrics is None else {name: round(metrics[name], 4) for name in SHOWN if name in metrics} | {
        "users": metrics.get("num_users")}


def train(config, workdir: Path) -> dict:
    """A run trained from scratch (or read back): {wall_s, train_s, best_step, test}."""
    done = workdir / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    resumed = (workdir / "checkpoints").exists()  # an interrupted run continues from its last checkpoint
    start = time.perf_counter()
    results = train_and_evaluate(config, workdir, log=lambda m: None, progress=False)
    record = {"wall_s": round(time.perf_counter() - start, 1), "resumed": resumed,
              "train_s": results["timings"]["train_s"],
              "best_step": results["best_step"], "steps": results["steps"], "epochs": results.get("epochs"),
              "stopped_early": results.get("stopped_early"), "test": shown(results["test"])}
    done.write_text(json.dumps(record))
    return record


def following(workdir: Path, events: Path, key: str) -> dict:
    """`evaluate_following` of a run folder on `events`, cached in the folder as `<key>.json`."""
    cached = workdir / f"{key}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    metrics = evaluate_following(workdir, events)
    record = shown(metrics) | {"counts": metrics["counts"]}
    cached.write_text(json.dumps(record))
    return record


def measure(name: str, args) -> dict:
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    logs = periods(name, args.base, args.increments, args.data_dir)
    files = [write_events(logs[:k + 1], out / f"events_0-{k}.parquet") for k in range(len(logs))]
    increments = [write_events([logs[k]], out / f"increment_{k}.parquet") for k in range(1, len(logs))]
    overrides = list(args.override)
    base = train(config_for(name, files[0], args.epochs, overrides), out / "base")
    result = {"events": [len(log) for log in logs], "base": base,
              "base_on_increment_1": following(out / "base", increments[0], "following_1"), "rounds": []}
    chain = out / "update"
    if not chain.exists():
        shutil.copytree(out / "base", chain, ignore=shutil.ignore_patterns(".lock", "done.json", "following_*"))
    for k in range(1, min(len(logs) - 1, args.rounds + 1)):  # update on increment k, rank increment k+1
        done = RunFolder(chain).updates()
        if len(done) < k:
            update_run(chain, increments[k - 1], num_epochs=args.update_epochs, log=lambda m: None)
            done = RunFolder(chain).updates()
        update = done[k - 1]
        updated = following(chain, increments[k], f"following_{k + 1}")
        retrained_run = train(config_for(name, files[k], args.epochs, overrides), out / f"retrain_{k}")
        retrained = following(out / f"retrain_{k}", increments[k], f"following_{k + 1}")
        result["rounds"].append({
            "update_on": f"increment {k}", "ranked_on": f"increment {k + 1}",
            "update": {"following": updated, "wall_s": update["wall_s"], "train_s": update["timings"]["train_s"],
                       "steps": update["steps"], "trained_to": update.get("trained_to"), "best_step": update["best_step"],
                       "train_rows": update["train_rows"],
                       "stopped_early": update.get("stopped_early"),
                       "new_users": update["new_users"], "new_items": update["new_items"],
                       "new_events": update["new_events"]},
            "retrain": {"following": retrained, "wall_s": retrained_run["wall_s"], "train_s": retrained_run["train_s"],
                        "steps": retrained_run["steps"], "best_step": retrained_run["best_step"],
                        "epochs": retrained_run.get("epochs"), "stopped_early": retrained_run.get("stopped_early")},
        })
        print(json.dumps({name: result["rounds"][-1]}), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-1m,foursquare-nyc")
    parser.add_argument("--out", default="runs/update_vs_retrain")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--base", type=float, default=0.7, help="The base's share of the events (by time).")
    parser.add_argument("--increments", type=int, default=3, help="Later periods (the last is only ranked).")
    parser.add_argument("--epochs", type=int, default=8, help="Epochs of the base run and of each retrain.")
    parser.add_argument("--update-epochs", type=int, default=8, help="Epochs of each update's training rows.")
    parser.add_argument("--rounds", type=int, default=99, help="At most this many update/retrain rounds.")
    parser.add_argument("--override", action="append", default=[], help="--config.KEY=VALUE for every run.")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"command": " ".join(sys.argv), "machine": machine(), "options": vars(args), "datasets": {}}
    for name in args.datasets.split(","):
        results["datasets"][name] = measure(name, args)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results["datasets"], indent=2))


if __name__ == "__main__":
    main()
