"""LightGCN propagation, dense user-item matrix against edges: where `model.propagation=auto` switches.

    python scripts/bench_lightgcn_propagation.py            # writes bench_results/lightgcn_propagation.json
    python scripts/bench_lightgcn_propagation.py --repeats 3 --fills 0.01 0.02

For random user-item graphs of Foursquare NYC's shape (1,084 x 5,136 rows) and ML-1M's
(6,041 x 3,707) with a given fraction of the cells filled, the time of one forward and backward
pass of 3 LightGCN layers (hidden 64) with `lightgcn_propagate_bipartite` (two matmuls a layer)
and with `lightgcn_propagate` (a gather and a scatter over the edges in both directions). The
indices are arguments of the jitted function, as in training (the run's context), so XLA does not
fold them into constants. Median of REPEATS timings of 5 calls each, after a warm-up call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from bench_common import machine  # scripts/ is on the path when a script runs

from stjax.layers import lightgcn_propagate, lightgcn_propagate_bipartite

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {"foursquare-nyc": (1084, 5136), "ml-1m": (6041, 3707)}


def _seconds(fn, args, repeats: int, calls: int = 5) -> list[float]:
    jax.block_until_ready(fn(*args))
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            jax.block_until_ready(fn(*args))
        out.append((time.perf_counter() - start) / calls)
    return out


def _loss_dense(user_x, item_x, users, items):
    return sum(jnp.sum(t**2) for t in lightgcn_propagate_bipartite(user_x, item_x, users, items, 3))


def _loss_edges(user_x, item_x, senders, receivers):
    final, _ = lightgcn_propagate(jnp.concatenate([user_x, item_x]), senders, receivers, 3)
    return jnp.sum(final**2)


def measure(users: int, items: int, fill: float, repeats: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    pairs = int(users * items * fill)
    pair_users = rng.integers(1, users, pairs).astype(np.int32)
    pair_items = rng.integers(1, items, pairs).astype(np.int32)
    senders = np.concatenate([pair_users, pair_items + users])
    receivers = np.concatenate([pair_items + users, pair_users])
    user_x = jnp.asarray(rng.normal(size=(users, 64)), jnp.float32)
    item_x = jnp.asarray(rng.normal(size=(items, 64)), jnp.float32)
    dense = jax.jit(jax.grad(_loss_dense, argnums=(0, 1)))
    edges = jax.jit(jax.grad(_loss_edges, argnums=(0, 1)))
    dense_s = _seconds(dense, (user_x, item_x, pair_users, pair_items), repeats)
    edges_s = _seconds(edges, (user_x, item_x, senders, receivers), repeats)
    return {"users": users, "items": items, "fill": fill, "pairs": pairs,
            "dense_s": statistics.median(dense_s), "edges_s": statistics.median(edges_s),
            "dense_repeats": dense_s, "edges_repeats": edges_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.045])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "lightgcn_propagation.json"))
    args = parser.parse_args()
    rows = []
    for name, (users, items) in SHAPES.items():
        for fill in args.fills:
            row = {"shape": name, **measure(users, items, fill, args.repeats)}
            rows.append(row)
            print(f"{name} fill {fill:.3f} ({row['pairs']:,} pairs): dense {row['dense_s']:.3f} s, "
                  f"edges {row['edges_s']:.3f} s", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**machine(), "repeats": args.repeats, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
