"""Training and evaluation throughput of SASRec, stjax vs a bare JAX step vs RecBole 1.2.1.

Sizes (RecBole's SASRec defaults): hidden 64, inner 256, 2 blocks, 2 heads, max length 50,
batch 256, cross-entropy over all items. Each timing is the best of REPEATS. Writes bench_results/train.json.

    python scripts/bench_train.py                                 # stjax only
    python scripts/bench_train.py --recbole-python /tmp/rbvenv/bin/python   # side by side

RecBole's venv: python3 -m venv /tmp/rbvenv && /tmp/rbvenv/bin/pip install torch==2.13.0 recbole==1.2.1 'numpy<2' 'pandas<2.3' 'scipy<1.15'
(RecBole 1.2.1 still assigns np.float_, which NumPy 2 removed.)

stjax trains on every position of a sequence window (49 targets per row at length 50);
RecBole trains on one target per sequence prefix. So both steps/s and targets/s are given.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from stjax.config import base_config
from stjax.train.loop import build_run, make_evaluators
from stjax.train.state import make_train_step

STEPS = 30
REPEATS = 3


def sasrec_config(source: str):
    config = base_config("sasrec", source=source)
    config.model.mlp_ratio = 4
    config.data.max_length = 50
    config.train.batch_size = 256
    return config


def _model_loss(run, params, batch, key, model_config):
    losses, aux = run.spec.losses(run.module, {"params": params}, batch, rng=key, step=0, context=run.context,
                                  config=model_config)
    return losses["model"], aux


def bench_stjax(source: str, train: bool = True) -> dict:
    config = sasrec_config(source)
    run = build_run(config, log=lambda m: None)
    out = {"users": run.prepared.log.num_users, "items": run.prepared.log.num_items}
    params = jax.tree_util.tree_map(jnp.copy, run.state.params)  # the step donates run.state
    if train:
        step = make_train_step(run.spec, run.module, run.tx, config.model, 0, run.shardings)
        state = run.state
        batch = jax.device_put(next(run.iterator), run.shardings.batch)
        state, metrics = step(state, batch, run.context)
        jax.block_until_ready(metrics)
        # The framework path: iterator -> device_put -> sharded, donated step, metrics summed on the device
        # and fetched once at the end. The bare path: the same network, loss and optimizer in a plain
        # jitted, donated function on one fixed device batch. Interleaved, best of REPEATS each.
        tx = optax.adam(1e-3)
        opt_state = tx.init(params)
        key = jax.random.key(0)

        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def bare(params, opt_state, batch):
            (loss, _), grads = jax.value_and_grad(
                lambda p: _model_loss(run, p, batch, key, config.model), has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        fixed = {k: jnp.asarray(v) for k, v in next(run.iterator).items()}
        params, opt_state, loss = bare(params, opt_state, fixed)
        jax.block_until_ready(loss)
        framework_s = bare_s = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            window = None
            for _ in range(STEPS):
                batch = jax.device_put(next(run.iterator), run.shardings.batch)
                state, metrics = step(state, batch, run.context)
                window = metrics if window is None else jax.tree_util.tree_map(jnp.add, window, metrics)
            targets = float(jax.device_get(window)["targets"])
            framework_s = min(framework_s, (time.perf_counter() - start) / STEPS)
            start = time.perf_counter()
            for _ in range(STEPS):
                params, opt_state, loss = bare(params, opt_state, fixed)
            jax.block_until_ready(loss)
            bare_s = min(bare_s, (time.perf_counter() - start) / STEPS)
        out |= {
            "train_step_s": round(framework_s, 4),
            "train_targets_per_s": round(targets / STEPS / framework_s),
            "train_sequences_per_s": round(256 / framework_s),
            "bare_step_s": round(bare_s, 4),
            "framework_overhead_pct": round(100 * (framework_s / bare_s - 1), 1),
            "epoch_s": round(framework_s * run.iterator.steps_per_epoch, 2),
        }
    evaluators = make_evaluators(run)
    examples = evaluators.evaluators[0].examples["test"]
    evaluators.evaluate(params, "test")  # compile
    eval_s = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        evaluators.evaluate(params, "test")
        eval_s = min(eval_s, time.perf_counter() - start)
    out |= {"test_pass_s": round(eval_s, 3), "eval_users_per_s": round(len(examples["targets"]) / eval_s)}
    return out


RECBOLE_RUNNER = r'''
import json, sys, time, torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_seed
data_path, dataset, steps, train = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
REPEATS = int(sys.argv[5])
config = Config(model="SASRec", dataset=dataset, config_dict={
    "data_path": data_path, "hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
    "MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 256, "eval_batch_size": 256, "loss_type": "CE",
    "train_neg_sample_args": None, "device": "cpu", "use_gpu": False, "show_progress": False,
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "epochs": 1,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
    "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "checkpoint_dir": "/tmp/recbole_ckpt"})
init_seed(config["seed"], config["reproducibility"])
data = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, data)
model = SASRec(config, train_data.dataset)
trainer = Trainer(config, model)
out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
if train:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    times = []
    for index, interaction in enumerate(train_data):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = model.calculate_loss(interaction)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        if index + 1 >= steps + 3:
            break
    step = sum(times[3:]) / len(times[3:])
    out.update(train_step_s=step, train_targets_per_s=256 / step, batches_per_epoch=len(train_data),
               epoch_s=step * len(train_data))
passes = []
for _ in range(REPEATS):
    start = time.perf_counter()
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    passes.append(time.perf_counter() - start)
out["test_pass_s"] = min(passes)
out["test_users"] = len(test_data.dataset.inter_feat) if hasattr(test_data, "dataset") else None
print("RESULT " + json.dumps(out))
'''


def bench_recbole(python: str, data_dir: str, dataset: str, train: bool) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(RECBOLE_RUNNER)
    result = subprocess.run([python, handle.name, str(Path(data_dir).absolute()), dataset, str(STEPS), "1" if train else "0",
                             str(REPEATS)],
                            capture_output=True, text=True, timeout=1800, cwd=tempfile.gettempdir())
    os.unlink(handle.name)
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (result.stderr or result.stdout)[-1500:]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--recbole-python", default=None)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="bench_results/train.json")
    args = parser.parse_args()
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
                           "backend": jax.default_backend()}}
    results["stjax_ml100k"] = bench_stjax("ml-100k")
    print("stjax ml-100k", results["stjax_ml100k"], flush=True)
    results["stjax_ml1m_eval"] = bench_stjax("ml-1m", train=False)
    print("stjax ml-1m", results["stjax_ml1m_eval"], flush=True)
    if args.recbole_python:
        results["recbole_ml100k"] = bench_recbole(args.recbole_python, args.data_dir, "ml-100k", True)
        print("recbole ml-100k", results["recbole_ml100k"], flush=True)
        results["recbole_ml1m_eval"] = bench_recbole(args.recbole_python, args.data_dir, "ml-1m", False)
        print("recbole ml-1m", results["recbole_ml1m_eval"], flush=True)
        r, s = results["recbole_ml100k"], results["stjax_ml100k"]
        if "train_targets_per_s" in r:
            results["ratios"] = {
                "train_targets_per_s": round(s["train_targets_per_s"] / r["train_targets_per_s"], 1),
                "ml100k_eval_speedup": round(r["test_pass_s"] / s["test_pass_s"], 2),
            }
            if "test_pass_s" in results["recbole_ml1m_eval"]:
                results["ratios"]["ml1m_eval_speedup"] = round(
                    results["recbole_ml1m_eval"]["test_pass_s"] / results["stjax_ml1m_eval"]["test_pass_s"], 2)
        print("ratios", results.get("ratios"), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
