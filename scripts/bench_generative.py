"""Training time per epoch of Mult-VAE, RecVAE and EASE, stjax vs RecBole 1.2.1's own MultiVAE,
RecVAE and EASE, on the same ML-1M training users, interleaved in one run.

    python scripts/bench_generative.py --recbole-python /tmp/rbvenv/bin/python   # writes bench_results/generative.json
    python scripts/bench_generative.py                                           # stjax only

RecBole's venv: see scripts/bench_train.py's docstring. Data: the training users of stjax's
held-out-users split of ML-1M (`stjax.config.mult_vae_protocol`: ratings >= 4, users with >= 5
positives, 600 + 600 held out; 4,834 users, 3,533 items), which RecBole reads as atomic files that
this script writes from stjax's bags (scripts/recbole_generative.py says how). Each side trains as
its users run it: stjax the experiments' configs (experiments/multvae_ml1m.py, recvae_ml1m.py,
ease_ml1m.py), RecBole its defaults (scripts/recbole_generative.py), both at Mult-VAE's 600-200.

One epoch: stjax, the training loop's path (`bench_train.timed_steps`) over the steps of one epoch
at the config's batch (500 users: 10 steps, the last padded); EASE, the closed form computed from
the training bags (`make_context`). RecBole, `trainer._train_epoch` at its default batch (2048
users: 3 batches); for RecVAE that is 3 encoder passes and 1 decoder pass; for EASE, building the
model (the closed form) and one `TraditionalTrainer` epoch of dummy losses. Both sides are timed
the same way, WARMUP epochs and then REPEATS epochs alternating stjax, RecBole, stjax, ... so that
other load on the machine falls on both; medians, best and worst, ratios per repeat.

Equal work (`per_user_pass`): seconds per training user per pass over the data, where a pass
computes one loss and its gradients for every user. RecBole's RecVAE epoch is 4 such passes;
stjax's RecVAE epoch computes the encoder's and the decoder's losses on every batch (its phases
alternate by batch: `stjax/models/recvae.py`), so it counts as 2. For EASE the closed forms alone.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import JsonWorker, machine, ratios, spread  # scripts/: on the path
from bench_train import timed_steps
from recbole_generative import write_atomic

from stjax.train.loop import build_run
from stjax.train.state import make_train_step

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 1
DATASET = "ml-1m-heldout"
# stjax experiment, RecBole model, passes over the training users per epoch (stjax, RecBole)
MODELS = {
    "multvae": ("experiments/multvae_ml1m.py", "MultiVAE", (1, 1)),
    "recvae": ("experiments/recvae_ml1m.py", "RecVAE", (2, 4)),
    "ease": ("experiments/ease_ml1m.py", "EASE", (1, 1)),
}


def load_config(path: str):
    spec = importlib.util.spec_from_file_location("stjax_experiment", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def per_user_pass(epoch_s: list[float], users: int, passes: int) -> list[float]:
    """Seconds per training user per pass over the data, for each repeat's epoch seconds."""
    return [seconds / (users * passes) for seconds in epoch_s]


def summary(epoch_s: list[float], users: int, passes: int) -> dict:
    """One side's figures: epoch seconds (median, best, worst, repeats), training users per second
    of epoch, and microseconds per user per pass (the equal-work figure)."""
    median = statistics.median(epoch_s)
    return {"epoch_s": spread(epoch_s), "users_per_s": round(users / median, 1), "passes_per_epoch": passes,
            "per_user_pass_us": round(1e6 * median / (users * passes), 1)}


def stjax_epoch(run, threads: int):
    """-> epoch(): seconds of one stjax training epoch of `run` (see the module docstring)."""
    if not run.spec.trainable:  # EASE: the fit is the closed form, computed from the training bags
        def fit() -> float:
            limit = contextlib.nullcontext()
            if threads:
                from threadpoolctl import threadpool_limits
                limit = threadpool_limits(threads)
            with limit:
                start = time.perf_counter()
                run.spec.make_context(run.prepared, run.info, run.config)
                return time.perf_counter() - start
        return fit
    step = make_train_step(run.spec, run.module, run.tx, run.config.model, int(run.config.seed), run.shardings)
    state = run.state
    steps = run.iterator.steps_per_epoch

    def epoch() -> float:
        nonlocal state
        state, per_step, _ = timed_steps(step, state, run, steps)
        return per_step * steps
    return epoch


def bench_model(name: str, recbole_python: str | None, data_path: str, bags, threads: int, repeats: int,
                sizes: str) -> dict:
    experiment, recbole_model, (stjax_passes, recbole_passes) = MODELS[name]
    config = load_config(experiment)
    run = build_run(config, log=lambda m: None)
    if not (np.array_equal(run.prepared.bags["users"], bags["users"]) and np.array_equal(run.prepared.bags["bag"], bags["bag"])):
        raise RuntimeError(f"{experiment}: its training bags differ from those written for RecBole")
    users = int(len(bags["users"]))
    epoch = stjax_epoch(run, threads)
    recbole = None
    if recbole_python:
        recbole = JsonWorker([recbole_python, str(ROOT / "scripts" / "recbole_generative.py"), "serve", data_path,
                              DATASET, recbole_model, str(threads), sizes])
        if recbole.info["users"] != users:
            raise RuntimeError(f"RecBole reads {recbole.info['users']} training users, stjax has {users}")
    times = {"stjax": [], "recbole": []}
    parts, loads = [], []
    try:
        for _ in range(WARMUP):
            epoch()
            if recbole:
                recbole.ask("train_epoch")
        for repeat in range(repeats):
            times["stjax"].append(epoch())
            if recbole:
                answer = recbole.ask("train_epoch")
                times["recbole"].append(answer["epoch_s"])
                parts.append({k: round(v, 4) for k, v in answer.items() if k in ("fit_s", "loop_s")})
            loads.append(round(os.getloadavg()[0], 2))
            print(f"{name} repeat {repeat + 1}/{repeats}: " +
                  ", ".join(f"{k} {v[-1]:.2f} s/epoch" for k, v in times.items() if v) + f", load {loads[-1]}",
                  flush=True)
    finally:
        if recbole:
            recbole.close()
    train = config.train
    out = {"warmup_epochs": WARMUP, "repeats": repeats, "load_average_1m_per_repeat": loads,
           "stjax": {"experiment": experiment, "batch_size": int(train.batch_size),
                     "steps_per_epoch": run.iterator.steps_per_epoch, "users": users,
                     "items": run.info.num_items, **summary(times["stjax"], users, stjax_passes)}}
    if name == "ease":
        out["stjax"]["l2"] = float(config.model.l2)
        out["stjax"]["steps_per_epoch"] = "closed form (float64)"
        out["stjax"]["batch_size"] = None
    if recbole:
        info = recbole.info
        out["recbole"] = {"model": recbole_model, "batch_size": info["train_batch_size"],
                          "batches_per_pass": info["batches_per_pass"], "users": info["users"],
                          "items": info["items"], "parameters": info["parameters"], "settings": info["settings"],
                          **summary(times["recbole"], users, recbole_passes)}
        if parts and parts[0]:
            out["recbole"]["parts_per_repeat"] = parts
            out["recbole"]["fit_s"] = spread([p["fit_s"] for p in parts])
        out["ratios"] = {"epoch recbole/stjax": ratios(times["recbole"], times["stjax"])}
        if parts and parts[0]:  # EASE: the equal work is the closed form alone
            out["ratios"]["closed form recbole/stjax"] = ratios([p["fit_s"] for p in parts], times["stjax"])
        else:
            out["ratios"]["per_user_pass recbole/stjax"] = ratios(
                per_user_pass(times["recbole"], users, recbole_passes), per_user_pass(times["stjax"], users, stjax_passes))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recbole-python", default=None)
    parser.add_argument("--models", default="multvae,recvae,ease", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="paper", choices=("paper", "recbole"),
                        help="RecBole's MultiVAE at 600-200 (paper, as stjax) or at its default 600-64 (recbole)")
    parser.add_argument("--threads", type=int, default=0,
                        help="1: both sides single-threaded (torch.set_num_threads(1), BLAS limited to one thread, "
                             "XLA without its Eigen thread pool)")
    parser.add_argument("--out", default="bench_results/generative.json")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    if unknown := [name for name in names if name not in MODELS]:
        parser.error(f"--models: unknown {unknown}; expected some of {', '.join(MODELS)}")
    if args.threads == 1:  # read when the CPU backend starts, which is after this point
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    elif args.threads:
        parser.error("--threads: 0 (each side's default) or 1")
    results = {"command": "python scripts/bench_generative.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "machine": machine(), "threads": args.threads or "default (torch: one per core; XLA: its thread pool)",
               "xla_flags": os.environ.get("XLA_FLAGS", ""), "recbole_sizes": args.sizes}
    first = build_run(load_config(MODELS[names[0]][0]), log=lambda m: None)
    bags = {"users": first.prepared.bags["users"], "bag": first.prepared.bags["bag"]}
    with tempfile.TemporaryDirectory(prefix="stjax_recbole_") as data_path:
        written = write_atomic(data_path, DATASET, bags["users"], bags["bag"], first.info.num_items)
        results["data"] = {"source": "ml-1m, stjax.config.mult_vae_protocol (held_out=600), training users only",
                           "training_users": int(len(bags["users"])), "items": first.info.num_items,
                           "training_pairs": written["pairs"], "items_only_held_out_users_have": written["unseen_items"]}
        del first
        for name in names:
            results[name] = bench_model(name, args.recbole_python, data_path, bags, args.threads, args.repeats,
                                        args.sizes)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({name: results[name].get("ratios") for name in names}, indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
