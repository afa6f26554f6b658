"""SASRec training and evaluation throughput, stjax vs RecBole 1.2.1, interleaved in one run.

    python scripts/bench_train.py --recbole-python /tmp/rbvenv/bin/python     # writes bench_results/train.json
    python scripts/bench_train.py                                             # stjax only

RecBole's venv: python3 -m venv /tmp/rbvenv && /tmp/rbvenv/bin/pip install torch recbole==1.2.1 'numpy<2'
'pandas<2.3' 'scipy<1.15' (RecBole 1.2.1 still assigns np.float_, which NumPy 2 removed).

Sizes (RecBole's SASRec defaults): hidden 64, inner 256, 2 blocks, 2 heads, max length 50, batch 256,
cross-entropy over all items. RecBole runs in its own process (scripts/recbole_sasrec.py serve) with
PyTorch's autograd anomaly detection OFF: RecBole's sine.py switches it on at import; the worker
switches it off, asserts it is off before timing and reports it, and this script refuses a result
that says otherwise. Both sides are timed the same way: WARMUP steps, then REPEATS runs of STEPS
steps each, alternating stjax, RecBole, stjax, ... so that other load on the machine falls on both;
each side's median, best and worst seconds per step are kept, and ratios are taken per repeat.

The sides train on different targets per row: stjax on every position of a window (up to 49
targets per row at length 50), RecBole on one target per sequence prefix. So per-step and
per-target figures are both given, and an equal-work row: one pass over all ~97k training targets
of ml-100k on each side (stjax with data.window=all, whose windows cover every training target
once; RecBole's epoch of prefixes), each priced at that side's median step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from bench_common import JsonWorker, machine, ratios, spread  # scripts/: on the path

from stjax.config import base_config
from stjax.train.loop import build_run, make_evaluators
from stjax.train.state import make_train_step

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 3


def sasrec_config(source: str, window: str = "last"):
    config = base_config("sasrec", source=source)
    config.model.mlp_ratio = 4
    config.data.max_length = 50
    config.data.window = window
    config.train.batch_size = 256
    return config


def timed_steps(step, state, run, count: int):
    """`count` steps of the training loop's path: iterator -> device_put -> sharded, donated step;
    metrics summed on the device, fetched once at the end. -> (state, seconds per step, targets)."""
    start = time.perf_counter()
    window = None
    for _ in range(count):
        state, metrics = step(state, jax.device_put(next(run.iterator), run.shardings.batch), run.context)
        window = metrics if window is None else jax.tree_util.tree_map(jnp.add, window, metrics)
    targets = float(jax.device_get(window)["targets"])
    return state, (time.perf_counter() - start) / count, targets


class RecBole(JsonWorker):
    """scripts/recbole_sasrec.py serve in RecBole's Python: one JSON line per command."""

    def __init__(self, python: str, data_dir: str, dataset: str, threads: int = 0):
        super().__init__([python, str(ROOT / "scripts" / "recbole_sasrec.py"), "serve",
                          str(Path(data_dir).absolute()), dataset, str(threads)])


def train_and_eval(recbole: RecBole | None, steps: int, repeats: int, eval_repeats: int) -> dict:
    config = sasrec_config("ml-100k")
    run = build_run(config, log=lambda m: None)
    step = make_train_step(run.spec, run.module, run.tx, config.model, 0, run.shardings)
    state = run.state

    def stjax_steps(count: int) -> tuple[float, float]:
        """Seconds per step and targets of `count` steps (`timed_steps`)."""
        nonlocal state
        state, seconds, targets = timed_steps(step, state, run, count)
        return seconds, targets

    stjax_steps(WARMUP)  # compiles
    if recbole:
        recbole.ask(f"train {WARMUP} 1")
    times = {"stjax": [], "recbole": []}
    stjax_targets, loads = [], []
    for repeat in range(repeats):
        seconds, targets = stjax_steps(steps)
        times["stjax"].append(seconds)
        stjax_targets.append(targets / steps)
        if recbole:
            times["recbole"].append(recbole.ask(f"train 0 {steps}")["step_s"])
        loads.append(round(os.getloadavg()[0], 2))
        print(f"train repeat {repeat + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.3f} s/step" for k, v in times.items() if v),
              flush=True)
    all_run = build_run(sasrec_config("ml-100k", window="all"), log=lambda m: None)
    all_windows = all_run.iterator
    training_targets = int((all_run.prepared.sequences.train["targets"] > 0).sum())
    out = {"train": {
        "steps_per_repeat": steps, "warmup_steps": WARMUP, "load_average_1m_per_repeat": loads,
        "stjax": {"step_s": spread(times["stjax"]), "targets_per_step": round(statistics.mean(stjax_targets), 1),
                  "targets_per_s": round(statistics.mean(stjax_targets) / statistics.median(times["stjax"])),
                  "steps_per_epoch_window_last": run.iterator.steps_per_epoch,
                  "steps_per_epoch_window_all": all_windows.steps_per_epoch,
                  "training_targets": training_targets}}}
    stjax_epoch = all_windows.steps_per_epoch * statistics.median(times["stjax"])
    out["train"]["stjax"]["all_targets_pass_s"] = round(stjax_epoch, 2)
    if recbole:
        rb = {"step_s": spread(times["recbole"]), "targets_per_step": recbole.info["train_batch_size"],
              "targets_per_s": round(recbole.info["train_batch_size"] / statistics.median(times["recbole"])),
              "steps_per_epoch": recbole.info["batches_per_epoch"],
              "all_targets_pass_s": round(recbole.info["batches_per_epoch"] * statistics.median(times["recbole"]), 2)}
        out["train"]["recbole"] = rb
        stjax_rates = [t / s for t, s in zip(stjax_targets, times["stjax"])]
        recbole_rates = [recbole.info["train_batch_size"] / s for s in times["recbole"]]
        out["train"]["ratios"] = {
            "step_time recbole/stjax": ratios(times["recbole"], times["stjax"]),
            "targets_per_s stjax/recbole": ratios(stjax_rates, recbole_rates),
            "all_targets_pass recbole/stjax": round(rb["all_targets_pass_s"] / stjax_epoch, 2)}
    out["eval_ml100k"] = eval_pass(run, state.params, recbole, eval_repeats)
    return out


def eval_pass(run, params, recbole: RecBole | None, repeats: int) -> dict:
    evaluators = make_evaluators(run)
    users = len(evaluators.evaluators[0].examples["test"]["targets"])
    evaluators.evaluate(params, "test", run.context)  # compiles
    if recbole:
        recbole.ask("eval test")
    times = {"stjax": [], "recbole": []}
    loads = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluators.evaluate(params, "test", run.context)
        times["stjax"].append(time.perf_counter() - start)
        if recbole:
            times["recbole"].append(recbole.ask("eval test")["pass_s"])
        loads.append(round(os.getloadavg()[0], 2))
    out = {"test_users": users, "repeats": repeats, "load_average_1m_per_repeat": loads,
           "stjax_pass_s": spread(times["stjax"])}
    if recbole:
        out["recbole_pass_s"] = spread(times["recbole"])
        out["ratio recbole/stjax"] = ratios(times["recbole"], times["stjax"])
    print("eval", {k: v for k, v in out.items() if "pass" in k or "ratio" in k}, flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recbole-python", default=None)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eval-repeats", type=int, default=5)
    parser.add_argument("--skip-ml1m", action="store_true")
    parser.add_argument("--threads", type=int, default=0,
                        help="1: both sides single-threaded (torch.set_num_threads(1); XLA without its Eigen "
                             "thread pool), a per-core comparison that other jobs on the cores distort less")
    parser.add_argument("--out", default="bench_results/train.json")
    args = parser.parse_args(argv)
    if args.threads == 1:  # read when the CPU backend starts, which is after this point
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    elif args.threads:
        parser.error("--threads: 0 (each side's default) or 1")
    results = {
        "command": "python scripts/bench_train.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "sizes": "hidden 64, inner 256, 2 blocks, 2 heads, length 50, batch 256, CE over all items",
    }
    results["threads"] = args.threads or "default (torch: one per core; XLA: its thread pool)"
    results["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    recbole = RecBole(args.recbole_python, args.data_dir, "ml-100k", args.threads) if args.recbole_python else None
    if recbole:
        results["recbole"] = {**recbole.info, "version": "1.2.1"}
    try:
        results |= train_and_eval(recbole, args.steps, args.repeats, args.eval_repeats)
    finally:
        if recbole:
            recbole.close()
    if not args.skip_ml1m:
        recbole = RecBole(args.recbole_python, args.data_dir, "ml-1m", args.threads) if args.recbole_python else None
        try:
            run = build_run(sasrec_config("ml-1m"), log=lambda m: None)
            results["eval_ml1m"] = eval_pass(run, run.state.params, recbole, args.eval_repeats)
        finally:
            if recbole:
                recbole.close()
    print(json.dumps({k: v for k, v in results.get("train", {}).items() if k == "ratios"}, indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
