"""A catalogue of 10M items: SASRec trained with a sampled softmax, its item table split by rows over 8 devices.

SASRec (hidden 64, 2 blocks, 2 heads) with `model.loss=sampled` (`num_sampled` log-uniform
negatives shared by the batch, logQ-corrected; `stjax.models.shared.sampled_softmax_loss`), built
by `stjax.train.build.build_model` on a data x model = 1 x 8 mesh (`train.model_parallel=8`: the
table's rows, logical axis 'vocab', are split over the 8 devices), trained with the engine's own
jitted step (`stjax.train.state.make_train_step`) on synthetic sequences whose items follow the
log-uniform (Zipf) law of their ids, then evaluated on held-out next items by their full-ranking
rank (`stjax.eval.metrics.target_rank`) and the sharded top-K (`stjax.eval.topk.top_k`) over the
whole table. Records steps/s, the bytes of params and optimizer state on each device, the process's
peak RSS, every collective in the compiled train and evaluation steps (none may be table- or
score-matrix-sized), and the memory arithmetic for 100M and 1B items on 8 x 80 GB GPUs and on a
TPU v5e-256 slice. Writes bench_results/large_catalogue.json.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python scripts/bench_large_catalogue.py
    python scripts/bench_large_catalogue.py --items 10000 --steps 3 --batch-size 8   # a smoke run

Without XLA_FLAGS the script sets the host device count to --devices itself (before JAX starts).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Targets of the memory arithmetic: name -> (devices, bytes of memory per device).
TARGETS = {"8x GPU 80 GB": (8, 80e9), "TPU v5e-256 (16 GB HBM per chip)": (256, 16e9)}
PROJECTED_ITEMS = (100_000_000, 1_000_000_000)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="training steps (the first, compiled, is not timed)")
    parser.add_argument("--num-sampled", type=int, default=1024)
    parser.add_argument("--sampler", default="log_uniform", choices=("log_uniform", "uniform"))
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--model-parallel", type=int, default=8)
    parser.add_argument("--eval-users", type=int, default=256)
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--projected-batch", type=int, default=1024,
                        help="sequences per device in the memory arithmetic for 100M / 1B items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "large_catalogue.json"))
    return parser.parse_args(argv)


def zipf_items(rng: np.random.Generator, num_items: int, shape) -> np.ndarray:
    """Items int32[shape] from the log-uniform law Q(i) = log((i + 1) / i) / log(I + 1), in float64
    (exact at any I): id 1 is the most popular, as the log_uniform sampler assumes."""
    draws = np.floor(np.exp(rng.random(shape) * np.log(num_items + 1.0))).astype(np.int64)
    return np.clip(draws, 1, num_items).astype(np.int32)


def sequence_batch(rng, num_items: int, batch_size: int, length: int) -> dict:
    """A training batch of the `sequence` kind: full windows of length T + 1, targets = next items."""
    full = zipf_items(rng, num_items, (batch_size, length + 1))
    times = np.broadcast_to(np.arange(length + 1, dtype=np.int32) * 3600 + 1, full.shape)
    return {"users": np.arange(1, batch_size + 1, dtype=np.int32), "weights": np.ones(batch_size, np.float32),
            "items": full[:, :-1], "timestamps": np.ascontiguousarray(times[:, :-1]),
            "targets": full[:, 1:], "target_times": np.ascontiguousarray(times[:, 1:])}


def bytes_per_device(tree) -> dict[str, int]:
    """Bytes of the addressable shards of every array of `tree`, per device."""
    import jax

    totals: dict[str, int] = {}
    for leaf in jax.tree_util.tree_leaves(tree):
        for shard in leaf.addressable_shards:
            totals[str(shard.device)] = totals.get(str(shard.device), 0) + shard.data.nbytes
    return totals


COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
COLLECTIVE = re.compile(r"=\s*(.*?)\s(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
SHAPE = re.compile(r"\b([a-z]+[0-9]*)\[([0-9,]*)\]")
BYTES = {"f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2, "pred": 1, "s8": 1, "u8": 1, "f64": 8, "s64": 8}


def collectives(compiled) -> dict:
    """Every collective of a compiled computation (its HLO text), by kind: how many, and the largest
    operand (elements and bytes per device, its shape). A table- or score-matrix-sized entry would
    mean the compiler gathered what should stay split."""
    found: dict[str, dict] = {}
    for line in compiled.as_text().splitlines():
        match = COLLECTIVE.search(line)
        if not match:
            continue
        entry = found.setdefault(match.group(2), {"count": 0, "largest_elements": 0, "largest_bytes": 0,
                                                  "largest_shape": ""})
        entry["count"] += 1
        for dtype, dims in SHAPE.findall(match.group(1)):
            elements = int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
            if elements > entry["largest_elements"]:
                entry.update(largest_elements=elements, largest_bytes=elements * BYTES.get(dtype, 4),
                             largest_shape=f"{dtype}[{dims}]")
    return found


def memory_arithmetic(items: int, hidden: int, devices: int, memory: float, activation_bytes: float) -> dict:
    """Bytes per device of a row-sharded item table with Adam, in float32 and bfloat16.

    table = rows x hidden x bytes / devices (rows padded to the devices); Adam keeps two moments of
    the table's shape; the gradient of a gathered table is dense in optax (a scatter into zeros of
    the table's shape); activations: measured per sequence (`activation_probe`) x the batch each
    device runs. The dense layers (under 1 MB at hidden 64) are left out."""
    rows = -(-(items + 1) // devices) * devices
    out = {}
    for name, size, activation_scale in (("float32", 4, 1.0), ("bfloat16", 2, 0.5)):
        table = rows * hidden * size / devices
        parts = {"table_gb": table / 1e9, "adam_moments_gb": 2 * table / 1e9, "gradients_gb": table / 1e9,
                 "activations_gb": activation_bytes * activation_scale / 1e9}
        total_gb = sum(parts.values())
        out[name] = {key: round(value, 3) for key, value in parts.items()} | {
            "total_gb": round(total_gb, 3), "device_memory_gb": memory / 1e9,
            "fits": total_gb < 0.9 * memory / 1e9}  # 10% left to the runtime and fragmentation
    out["layout"] = (f"mesh data 1 x model {devices}: the table's {rows:,} rows split over all {devices} devices, "
                     f"each device running the whole batch")
    return out


def activation_probe(args, mesh_devices: int) -> dict:
    """XLA's temporaries of the same train step on a 1,000-item catalogue on one device: with a
    table that small they are the activations of a batch (and its negatives' logits)."""
    import jax

    from stjax.models.base import DataInfo
    from stjax.train.build import build_model
    from stjax.train.state import make_train_step

    config = large_config(args, num_devices=1, model_parallel=1)
    model = build_model(config, DataInfo(num_users=1, num_items=1000, max_length=args.max_length))
    step = make_train_step(model.spec, model.module, model.tx, config.model, args.seed, model.shardings)
    batch = jax.device_put(sequence_batch(np.random.default_rng(0), 1000, args.batch_size, args.max_length),
                           model.shardings.batch)
    memory = step.lower(model.state, batch, model.context).compile().memory_analysis()
    temp = float(getattr(memory, "temp_size_in_bytes", 0))
    return {"items": 1000, "batch_size": args.batch_size, "temp_bytes": int(temp),
            "bytes_per_sequence": round(temp / args.batch_size)}


def large_config(args, num_devices: int, model_parallel: int):
    from stjax.config import base_config

    config = base_config("sasrec")
    config.seed = args.seed
    config.model.update(hidden=args.hidden, num_blocks=2, num_heads=2, loss="sampled", num_sampled=args.num_sampled,
                        sampler=args.sampler)
    config.data.max_length = args.max_length
    config.train.update(batch_size=args.batch_size, num_devices=num_devices, model_parallel=model_parallel,
                        warmup_steps=0, learning_rate=1e-3)
    return config


def run(args) -> dict:
    import jax
    import jax.numpy as jnp
    from bench_common import machine, xla_cost  # scripts/ is on the path when a script runs
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from stjax.eval.metrics import target_rank
    from stjax.eval.topk import top_k
    from stjax.models.base import DataInfo
    from stjax.models.shared import mask_non_items
    from stjax.train.build import build_model
    from stjax.train.state import make_train_step, put_batch

    started = time.perf_counter()
    facts = machine()
    config = large_config(args, args.devices, args.model_parallel)
    info = DataInfo(num_users=args.eval_users, num_items=args.items, max_length=args.max_length,
                    item_shards=args.model_parallel)
    tick = time.perf_counter()
    model = build_model(config, info, {}, total_steps=args.steps)
    jax.block_until_ready(model.state)
    build_s = time.perf_counter() - tick
    mesh, shardings = model.mesh, model.shardings
    table = model.state.params["item_embedding"]["embedding"]
    params_bytes = bytes_per_device(model.state.params)
    optimizer_bytes = bytes_per_device(model.state.opt_state)

    rng = np.random.default_rng(args.seed)
    step = make_train_step(model.spec, model.module, model.tx, config.model, args.seed, shardings)
    batches = [put_batch(sequence_batch(rng, args.items, args.batch_size, args.max_length), shardings.batch)
               for _ in range(args.steps)]
    tick = time.perf_counter()
    compiled = step.lower(model.state, batches[0], model.context).compile()
    compile_s = time.perf_counter() - tick
    train_collectives = collectives(compiled)
    cost = xla_cost(compiled)
    state, history = model.state, []
    tick = time.perf_counter()
    state, metrics = compiled(state, batches[0], model.context)
    jax.block_until_ready(metrics)
    first_step_s = time.perf_counter() - tick
    history.append(metrics)
    tick = time.perf_counter()
    for batch in batches[1:]:
        state, metrics = compiled(state, batch, model.context)  # no host sync: losses fetched at the end
        history.append(metrics)
    jax.block_until_ready(state)
    timed_s = time.perf_counter() - tick
    losses = [float(m["loss"]) for m in jax.device_get(history)]
    del batches

    # Evaluation: the next item of held-out sequences, ranked over the whole table.
    scores_sharding = NamedSharding(mesh, P("data", "model"))

    def scores_of(params, batch):
        scores = model.spec.score(model.module, {"params": params}, batch, context=model.context, scoring=None)
        return jax.lax.with_sharding_constraint(mask_non_items(scores.astype(jnp.float32), args.items),
                                                scores_sharding)  # [B, W], columns split over `model`

    def evaluate(params, batch, targets):
        scores = scores_of(params, batch)
        values, items = top_k(scores, args.k, mesh)
        return target_rank(scores, targets), values, items

    eval_step = jax.jit(evaluate)
    eval_rng = np.random.default_rng(args.seed + 1)
    eval_batches = []
    for _ in range(-(-args.eval_users // args.eval_batch_size)):
        full = sequence_batch(eval_rng, args.items, args.eval_batch_size, args.max_length)
        eval_batches.append(({"items": full["items"], "timestamps": full["timestamps"]}, full["targets"][:, -1]))
    placed = [(put_batch(b, shardings.batch), put_batch(t, shardings.batch)) for b, t in eval_batches]
    tick = time.perf_counter()
    eval_compiled = eval_step.lower(state.params, *placed[0]).compile()
    eval_compile_s = time.perf_counter() - tick
    eval_collectives = collectives(eval_compiled)
    tick = time.perf_counter()
    outputs = [eval_compiled(state.params, batch, targets) for batch, targets in placed]
    outputs = jax.device_get(outputs)
    eval_s = time.perf_counter() - tick
    ranks = np.concatenate([o[0] for o in outputs])[: args.eval_users]
    items = np.concatenate([o[2] for o in outputs])[: args.eval_users]
    targets = np.concatenate([t for _, t in eval_batches])[: args.eval_users]
    in_top = (items == targets[:, None]).any(axis=1)
    # The sharded top-K against lax.top_k of the same scores on one device (the first rows of a batch).
    check_rows = min(4, args.eval_batch_size)
    scores = jax.jit(scores_of)(state.params, placed[0][0])
    reference = jax.device_get(jax.lax.top_k(jax.device_put(scores[:check_rows], jax.devices()[0]), args.k))
    del scores
    k = args.k
    hit = ranks < k
    evaluation = {
        "users": int(len(ranks)), "k": k, "compile_s": round(eval_compile_s, 2), "seconds": round(eval_s, 3),
        "users_per_s": round(len(ranks) / eval_s, 1), f"hr@{k}": round(float(hit.mean()), 4),
        f"ndcg@{k}": round(float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()), 4),
        "median_rank": float(np.median(ranks)),
        # i.i.d. Zipf targets: ranking by popularity (id order) is the best any model can do.
        f"popularity_oracle_hr@{k}": round(float(np.log(k + 1.0) / np.log(args.items + 1.0)), 4),
        "rank_below_k_iff_in_top_k": bool(np.array_equal(hit, in_top)),
        "top_k_equals_lax_top_k": bool(np.array_equal(outputs[0][2][:check_rows], reference[1])
                                       and np.array_equal(outputs[0][1][:check_rows], reference[0])),
        "collectives": eval_collectives,
    }

    probe = activation_probe(args, args.devices)
    projections = {}
    for items_count in PROJECTED_ITEMS:
        for target, (devices, memory) in TARGETS.items():
            projections[f"{items_count:,} items, {target}"] = memory_arithmetic(
                items_count, args.hidden, devices, memory, probe["bytes_per_sequence"] * args.projected_batch)
    rows = int(table.shape[0])
    return {
        "machine": facts,
        "command": " ".join(["python scripts/bench_large_catalogue.py", *sys.argv[1:]]),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "model": f"sasrec hidden {args.hidden}, 2 blocks, 2 heads, max_length {args.max_length}, loss=sampled, "
                 f"num_sampled {args.num_sampled}, sampler {args.sampler}",
        "items": args.items, "table": {"shape": list(table.shape), "dtype": str(table.dtype),
                                        "spec": str(table.sharding.spec), "rows_per_device": rows // args.model_parallel,
                                        "bytes": int(table.nbytes)},
        "mesh": dict(mesh.shape), "batch_size": args.batch_size, "max_length": args.max_length,
        "build_s": round(build_s, 2), "compile_s": round(compile_s, 2), "first_step_s": round(first_step_s, 3),
        "timed_steps": args.steps - 1, "timed_s": round(timed_s, 3),
        "steps_per_s": round((args.steps - 1) / timed_s, 3) if args.steps > 1 else None,
        "losses": {"first": round(losses[0], 4), "last": round(losses[-1], 4), "all": [round(x, 4) for x in losses]},
        "train_step_cost": cost, "train_collectives": train_collectives,
        "memory_per_device": {
            "params_bytes": params_bytes, "optimizer_bytes": optimizer_bytes,
            "params_max_gb": round(max(params_bytes.values()) / 1e9, 3),
            "optimizer_max_gb": round(max(optimizer_bytes.values()) / 1e9, 3)},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
        "evaluation": evaluation,
        "activation_probe": probe, "projected_batch_per_device": args.projected_batch,
        "projections": projections,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:  # before JAX starts
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.devices}".strip()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    results = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    summary = {key: results[key] for key in ("items", "mesh", "steps_per_s", "peak_rss_gb", "wall_s")}
    print(json.dumps(summary | {"memory_per_device": {k: v for k, v in results["memory_per_device"].items()
                                                      if k.endswith("_gb")},
                                "evaluation": {k: v for k, v in results["evaluation"].items() if k != "collectives"},
                                "train_collectives": results["train_collectives"],
                                "eval_collectives": results["evaluation"]["collectives"]}))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
