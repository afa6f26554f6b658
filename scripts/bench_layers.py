"""Layer benchmark: forward+backward time and compile time. Writes bench_results/layers.json.

    python scripts/bench_layers.py [--quick]

Cases: scanned vs unrolled LSTM (batch 64, hidden 64, T = 50 and 200), causal self-attention
block (batch 64, D 64, 2 heads, T = 50 and 200), GAT (2 heads x 32) on a random graph of
20k nodes and 100k edges.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jraph
import numpy as np
from bench_common import machine  # scripts/ is on the path when a script runs
from flax.linen import meta

from stjax.layers import GAT, RecurrentLayer, TransformerBlock


def measure(loss_fn, params, *args, repeats=10):
    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    start = time.perf_counter()
    compiled = grad_fn.lower(params, *args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(params, *args))
    start = time.perf_counter()
    for _ in range(repeats):
        out = compiled(params, *args)
    jax.block_until_ready(out)
    return {"compile_s": round(compile_s, 3), "fwd_bwd_ms": round((time.perf_counter() - start) / repeats * 1e3, 2)}


def bench_lstm(time_steps, scan):
    layer = RecurrentLayer(cell="lstm", hidden=64, scan=scan)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(64, time_steps, 64)), jnp.float32)
    mask = jnp.ones((64, time_steps), bool)
    params = meta.unbox(layer.init(jax.random.key(0), x, mask))
    return measure(lambda p, x: layer.apply(p, x, mask)[0].sum(), params, x)


def bench_attention(time_steps):
    block = TransformerBlock(2, 256, causal=True)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(64, time_steps, 64)), jnp.float32)
    padding = jnp.ones((64, time_steps), bool)
    params = meta.unbox(block.init(jax.random.key(0), x, padding))
    return measure(lambda p, x: block.apply(p, x, padding)[0].sum(), params, x)


def bench_gat(nodes=20_000, edges=100_000):
    rng = np.random.default_rng(0)
    graph = jraph.GraphsTuple(nodes=jnp.asarray(rng.normal(size=(nodes, 64)), jnp.float32), edges=None,
                              senders=jnp.asarray(rng.integers(0, nodes, edges), jnp.int32),
                              receivers=jnp.asarray(rng.integers(0, nodes, edges), jnp.int32),
                              n_node=jnp.asarray([nodes]), n_edge=jnp.asarray([edges]), globals=None)
    layer = GAT(32, num_heads=2)
    params = meta.unbox(layer.init(jax.random.key(0), graph))
    return measure(lambda p, n: layer.apply(p, graph._replace(nodes=n))[0].nodes.sum(), params, graph.nodes)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="T=50 only")
    parser.add_argument("--out", default="bench_results/layers.json")
    args = parser.parse_args()
    lengths = [50] if args.quick else [50, 200]
    results = {"machine": machine()}
    for t in lengths:
        results[f"lstm_scan_T{t}"] = bench_lstm(t, True)
        results[f"lstm_unrolled_T{t}"] = bench_lstm(t, False)
        results[f"attention_T{t}"] = bench_attention(t)
        print({k: v for k, v in results.items() if k.endswith(f"T{t}")}, flush=True)
    results["gat_100k_edges"] = bench_gat()
    print("gat", results["gat_100k_edges"], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
