"""Training throughput of the graph models on ML-1M, beside SASRec, from their experiment configs.

    python scripts/bench_graph_models.py                      # writes bench_results/graph_models.json
    python scripts/bench_graph_models.py --models tgat --steps 3 --repeats 2
    python scripts/bench_graph_models.py --models tgat --cost --set data.max_length=50 data.window=last

For each experiments/<model>_ml1m.py: the time to build the run (data, split, windows and the
model's context: graphs, time-sorted lists, geography), the first step (compilation), then
REPEATS runs of STEPS steps of the training loop's path (iterator -> device_put -> the jitted,
donated step; metrics fetched once per run), with the median / best / worst seconds per step,
training targets per second, steps per epoch and the implied time of one epoch and of the
config's whole run, and how many times the step compiled (it must stay 1: fixed shapes).
Needs the data: `stjax data fetch ml-1m`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jax
from bench_common import machine, xla_cost  # scripts/ is on the path when a script runs
from bench_train import timed_steps  # scripts/ is on the path when a script runs

from stjax.compiles import CompileCounter
from stjax.config import load_config
from stjax.train.loop import build_run
from stjax.train.state import make_train_step

ROOT = Path(__file__).resolve().parent.parent


def measure(name: str, steps: int, repeats: int, overrides=(), cost: bool = False) -> dict:
    config = load_config(str(ROOT / "experiments" / f"{name}_ml1m.py"), [f"--config.{o}" for o in overrides])
    start = time.perf_counter()
    run = build_run(config, log=lambda m: None)
    build_s = time.perf_counter() - start
    compiles = CompileCounter()
    step = make_train_step(run.spec, run.module, run.tx, config.model, 0, run.shardings)
    state = run.state

    costs = None
    if cost:  # the training step as compiled for one batch of the run
        batch = jax.device_put(next(run.iterator), run.shardings.batch)
        costs = xla_cost(step.lower(state, batch, run.context).compile())
    state, first_s, _ = timed_steps(step, state, run, 1)
    seconds, targets, loads = [], [], []
    for repeat in range(repeats):
        state, s, t = timed_steps(step, state, run, steps)
        seconds.append(s)
        targets.append(t / steps)
        loads.append(round(os.getloadavg()[0], 2))
        print(f"{name} repeat {repeat + 1}/{repeats}: {s:.3f} s/step", flush=True)
    median = statistics.median(seconds)
    per_epoch = run.iterator.steps_per_epoch
    return {
        "config": f"experiments/{name}_ml1m.py", "batch_size": int(config.train.batch_size),
        "max_length": int(config.data.max_length), "window": str(config.data.window),
        "build_run_s": round(build_s, 2), "first_step_s": round(first_s, 2),
        "step_s": {"median": round(median, 4), "best": round(min(seconds), 4), "worst": round(max(seconds), 4),
                   "repeats": [round(s, 4) for s in seconds]},
        "targets_per_step": round(statistics.median(targets), 1),
        "targets_per_s": round(statistics.median(targets) / median, 1),
        "steps_per_epoch": per_epoch, "epoch_s": round(per_epoch * median, 1),
        "num_epochs": int(config.train.num_epochs),
        "run_hours": round(per_epoch * median * int(config.train.num_epochs) / 3600, 2),
        "train_step_compiles": compiles.count(step), "load_average": loads, "overrides": list(overrides),
    } | ({"xla_cost": costs} if costs else {})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["sasrec", "lstm_gat", "tgat", "fusion"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every model, e.g. data.max_length=50 data.window=last")
    parser.add_argument("--cost", action="store_true",
                        help="also record XLA's cost analysis of the step (GFLOP, GB accessed, temporaries)")
    parser.add_argument("--out", default="bench_results/graph_models.json")
    args = parser.parse_args(argv)
    results = {"machine": machine(), "steps": args.steps, "repeats": args.repeats, "models": {}}
    for name in args.models:
        results["models"][name] = measure(name, args.steps, args.repeats, args.set, args.cost)
        print(name, json.dumps(results["models"][name]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
