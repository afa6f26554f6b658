"""stjax's SASRec train step against a minimal plain-Flax SASRec (scripts/yardstick_sasrec.py), same run.

    python scripts/bench_yardstick.py                  # writes bench_results/yardstick.json
    python scripts/bench_yardstick.py --repeats 9 --steps 20

Sizes: hidden 64, inner 256, 2 blocks, 2 heads, length 50, batch 256, CE over all ml-100k items at
every position, dropout 0.2. Four steps are timed, interleaved (A, B, C, D, A, B, ...) after one
warm-up run each, so load from other jobs hits all of them alike; each repeat is STEPS steps:

- stjax: `make_train_step` (sharded, donated; gradient clipping, warm-up/cosine Adam, grad-norm and
  target-count metrics) on one fixed device batch;
- stjax_loop: the same step fed by the data iterator and `device_put`, metrics summed on the device
  and fetched once per repeat (what `stjax train` does between evaluations);
- yardstick: the plain model (pre-LN, stjax's function exactly: tests/test_yardstick.py) with plain
  Adam, same batch, same weights;
- yardstick_post_ln: the post-LN form (the paper's and RecBole's).

Ratios are per repeat (stjax_i / yardstick_i) and summarised by median and range. The JSON also
holds XLA's cost analysis of each compiled step (GFLOP, GB of memory accessed, GB of temporaries), which does not
depend on the machine's load: equal flops show equal work.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from bench_common import machine, xla_cost  # scripts/ is on the path when a script runs

from stjax.config import base_config
from stjax.train.loop import build_run
from stjax.train.state import make_train_step

ROOT = Path(__file__).resolve().parent.parent


def load_yardstick():
    spec = importlib.util.spec_from_file_location("yardstick_sasrec", ROOT / "scripts" / "yardstick_sasrec.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sasrec_config(source: str = "ml-100k"):
    config = base_config("sasrec", source=source)
    config.model.mlp_ratio = 4
    config.data.max_length = 50
    config.train.batch_size = 256
    return config


def summary(seconds: list[float], steps: int, targets_per_step: float | None = None) -> dict:
    out = {"median_step_s": round(statistics.median(seconds), 5), "best_step_s": round(min(seconds), 5),
           "worst_step_s": round(max(seconds), 5), "repeats_step_s": [round(s, 5) for s in seconds],
           "steps_per_repeat": steps}
    if targets_per_step:
        out["median_targets_per_s"] = round(targets_per_step / statistics.median(seconds))
    return out


def ratio_summary(numerator: list[float], denominator: list[float]) -> dict:
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
            "max": round(max(ratios), 3), "of_medians": round(statistics.median(numerator) / statistics.median(denominator), 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="bench_results/yardstick.json")
    args = parser.parse_args(argv)
    yardstick = load_yardstick()
    config = sasrec_config()
    run = build_run(config, log=lambda m: None)
    num_items = run.info.num_items
    host_batch = next(run.iterator)
    batch = jax.device_put(host_batch, run.shardings.batch)
    targets_per_step = float(((host_batch["targets"] > 0) * host_batch["weights"][:, None]).sum())
    stjax_params = jax.tree_util.tree_map(np.asarray, run.state.params)

    step = make_train_step(run.spec, run.module, run.tx, config.model, 0, run.shardings)
    state = run.state

    def run_stjax(steps):
        nonlocal state
        for _ in range(steps):
            state, metrics = step(state, batch, run.context)
        jax.block_until_ready(metrics)

    def run_stjax_loop(steps):
        nonlocal state
        window = None
        for _ in range(steps):
            state, metrics = step(state, jax.device_put(next(run.iterator), run.shardings.batch), run.context)
            window = metrics if window is None else jax.tree_util.tree_map(jnp.add, window, metrics)
        jax.device_get(window)

    plain = {}
    for name, pre_norm in (("yardstick", True), ("yardstick_post_ln", False)):
        model = yardstick.SASRec(num_items=num_items, max_length=50, hidden=64, inner=256, num_blocks=2, num_heads=2,
                                 dropout=0.2, attention_dropout=0.2, pre_norm=pre_norm)
        params = yardstick.from_stjax_params(stjax_params, num_items)
        if not pre_norm:
            params = {k: v for k, v in params.items() if k != "final_norm"}
        params = jax.tree_util.tree_map(jnp.asarray, params)
        init_fn, plain_step = yardstick.make_train_step(model)
        plain[name] = {"step": plain_step, "params": params, "opt_state": init_fn(params), "count": 0}

    def runner(name):
        entry = plain[name]

        def run_plain(steps):
            for _ in range(steps):
                key = jax.random.fold_in(jax.random.key(0), entry["count"])
                entry["params"], entry["opt_state"], loss = entry["step"](entry["params"], entry["opt_state"], batch,
                                                                          key)
                entry["count"] += 1
            jax.block_until_ready(loss)

        return run_plain

    # XLA's own count of the compiled steps' work: load-independent, so it shows equal work (flops)
    # and the memory traffic that the timings feel.
    compiled = {"stjax": step.lower(state, batch, run.context).compile()}
    for name, entry in plain.items():
        compiled[name] = entry["step"].lower(entry["params"], entry["opt_state"], batch, jax.random.key(0)).compile()
    costs = {name: xla_cost(value) for name, value in compiled.items()}
    print("XLA cost analysis (GFLOP, GB accessed, GB of temporaries):", costs, flush=True)

    cases = {"stjax": run_stjax, "stjax_loop": run_stjax_loop, "yardstick": runner("yardstick"),
             "yardstick_post_ln": runner("yardstick_post_ln")}
    for fn in cases.values():  # compile and warm up
        fn(3)
    seconds = {name: [] for name in cases}
    loads = []
    for repeat in range(args.repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn(args.steps)
            seconds[name].append((time.perf_counter() - start) / args.steps)
        loads.append(os.getloadavg()[0])
        print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{n} {s[-1] * 1e3:.1f} ms" for n, s in seconds.items()),
              flush=True)
    results = {
        "command": "python scripts/bench_yardstick.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "load_average_1m_per_repeat": [round(x, 2) for x in loads],
        "sizes": {"hidden": 64, "inner": 256, "blocks": 2, "heads": 2, "length": 50, "batch": 256,
                  "items": num_items, "dropout": 0.2},
        "targets_per_step": targets_per_step,
        "xla_cost_analysis": costs,
        "cases": {name: summary(s, args.steps, targets_per_step) for name, s in seconds.items()},
        "ratios": {"stjax / yardstick": ratio_summary(seconds["stjax"], seconds["yardstick"]),
                   "stjax_loop / yardstick": ratio_summary(seconds["stjax_loop"], seconds["yardstick"]),
                   "stjax / yardstick_post_ln": ratio_summary(seconds["stjax"], seconds["yardstick_post_ln"])},
    }
    print(json.dumps(results["ratios"], indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
