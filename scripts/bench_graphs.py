"""Time to build the graphs and sample temporal neighbours on a real log (ML-1M by default).

    python scripts/bench_graphs.py                       # writes bench_results/graphs.json
    python scripts/bench_graphs.py --source foursquare-nyc

Each stage runs REPEATS times; the JSON keeps every time, the best and the median, the machine,
the load average before and after, and the sizes of what was built.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from bench_common import machine  # scripts/ is on the path when a script runs

from stjax.config import data_defaults
from stjax.data.pipeline import prepare
from stjax.graphs import (
    interaction_graph,
    item_transition_graph,
    normalized_adjacency,
    sample_neighbours,
    temporal_adjacency,
    user_relation_graph,
)
from stjax.graphs.context import item_geography, recent_before, temporal_lists

REPEATS = 3


def timed(function, repeats=REPEATS):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        jax.block_until_ready(result) if isinstance(result, jax.Array) else None
        times.append(round(time.perf_counter() - start, 4))
    return result, {"seconds": times, "best": min(times), "median": statistics.median(times)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="ml-1m")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--out", default="bench_results/graphs.json")
    args = parser.parse_args(argv)
    config = data_defaults()
    config.source = args.source
    load_before = os.getloadavg()
    prepared = prepare(config, log=lambda m: None)
    split, log = prepared.split, prepared.log
    stages = {}
    graph, stages["interaction_graph"] = timed(lambda: interaction_graph(split))
    _, stages["normalized_adjacency"] = timed(lambda: normalized_adjacency(graph))
    adjacency, stages["temporal_adjacency"] = timed(lambda: temporal_adjacency(graph))
    queries = graph.users.astype(np.int64), graph.timestamps
    _, stages["sample_recent_all_events"] = timed(lambda: sample_neighbours(adjacency, *queries, args.k))
    rng = np.random.default_rng(0)
    _, stages["sample_uniform_all_events"] = timed(lambda: sample_neighbours(adjacency, *queries, args.k, "uniform",
                                                                             rng))
    _, stages["item_transition_graph"] = timed(lambda: item_transition_graph(split))
    relation, stages["relation_co_interaction_1h"] = timed(lambda: user_relation_graph(split, "co_interaction",
                                                                                      window_s=3600))
    region, stages["relation_region"] = timed(lambda: user_relation_graph(split, "region"))
    lists, stages["temporal_lists_by_item"] = timed(lambda: temporal_lists(split, "item"))
    _, stages["item_geography_h3_res7"] = timed(lambda: item_geography(split, log.num_items + 1, 7))
    # On device: the k most recent users of each item before t, for one training batch's worth
    # (256 x 200 queries), jitted; the first call compiles.
    offsets, times = jnp.asarray(lists["offsets"]), jnp.asarray(lists["times"])
    items = jnp.asarray(rng.integers(1, log.num_items + 1, (256, 200)), jnp.int32)
    query_times = jnp.asarray(rng.integers(0, int(lists["times"].max()) + 1, (256, 200)), jnp.int32)
    lookup = jax.jit(lambda o, t, n, q: recent_before(o, t, n, q, args.k)[0])
    _, stages["recent_before_device_compile"] = timed(lambda: lookup(offsets, times, items, query_times), repeats=1)
    _, stages["recent_before_device_51200_queries"] = timed(lambda: lookup(offsets, times, items, query_times))
    result = {
        "command": "python scripts/bench_graphs.py " + " ".join(argv or []),
        "machine": machine() | {"load_average_before": [round(x, 2) for x in load_before]},
        "sizes": {"events": len(log), "training_events": len(graph.users), "users": log.num_users,
                  "items": log.num_items, "co_interaction_edges": len(relation[0]), "region_edges": len(region[0]),
                  "k": args.k},
        "stages": stages,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for name, stage in stages.items():
        print(f"{name:38s} best {stage['best']:.3f} s  median {stage['median']:.3f} s")


if __name__ == "__main__":
    main()
