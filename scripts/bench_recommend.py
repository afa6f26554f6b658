"""Streaming top-K recommendation throughput: users/s, wall time and peak RSS per number of users.

A freshly initialised SASRec (hidden 64, 2 blocks, 2 heads, max length 50; untrained weights cost
the same to score) over a synthetic catalogue of 50,000 items; every user has a random history of
10..30 events (generated as flat arrays, the layout of a run's histories.npz). Users go through
`stjax.serving.recommend.recommend`, the function behind `stjax recommend`, top-10, history excluded,
written to a temporary Parquet file. Each (users, batch size) case runs in its own process, so its
peak RSS is its own. Writes bench_results/recommend.json.

    python scripts/bench_recommend.py                                   # 10k and 100k users
    python scripts/bench_recommend.py --users 1000000                   # 1M users
    python scripts/bench_recommend.py --users 100000 --batch-sizes 512 1024 2048 4096   # batch sweep
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import machine  # scripts/ is on the path when a script runs

ROOT = Path(__file__).resolve().parents[1]


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def synthetic_histories(num_users: int, num_items: int, seed: int = 0):
    """`Histories` of num_users users with 10..30 uniform random items each, one hour apart."""
    from stjax.serving.recommend import Histories

    rng = np.random.default_rng(seed)
    lengths = rng.integers(10, 31, num_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    events = int(offsets[-1])
    position = np.arange(events, dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    start = np.repeat(rng.integers(0, 10**8, num_users), lengths)
    return Histories(users=np.char.add("u", np.arange(1, num_users + 1).astype(str)),
                     user_ids=np.zeros(num_users, np.int32),  # new users: the model reads only their items
                     offsets=offsets, items=rng.integers(1, num_items + 1, events).astype(np.int32),
                     timestamps=(start + position * 3600).astype(np.int32))


def run_case(num_users: int, num_items: int, batch_size: int, k: int) -> dict:
    """One case in this process: build, generate, recommend to Parquet; times and memory."""
    import jax

    from stjax.config import base_config
    from stjax.models.base import DataInfo
    from stjax.serving.recommend import recommend
    from stjax.train.loop import build_model

    tick = time.perf_counter()
    config = base_config("sasrec")
    config.model.update(hidden=64, num_blocks=2, num_heads=2)
    config.data.max_length = 50
    model = build_model(config, DataInfo(num_users=num_users, num_items=num_items, max_length=50))
    histories = synthetic_histories(num_users, num_items)
    tokens = np.char.add("i", np.arange(num_items + 1).astype(str))
    setup_s = time.perf_counter() - tick
    rss_before_kb = _status_kb("VmRSS")
    try:  # reset VmHWM: the streaming phase's own peak
        Path("/proc/self/clear_refs").write_text("5")
        streaming_hwm = True
    except OSError:
        streaming_hwm = False
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "recommendations.parquet")
        summary = recommend(model, histories, tokens, k, out, batch_size)
        import pyarrow.parquet as pq

        metadata = pq.ParquetFile(out).metadata
        rows, groups, size = metadata.num_rows, metadata.num_row_groups, os.path.getsize(out)
    assert rows == num_users, (rows, num_users)
    return {
        "users": num_users, "items": num_items, "k": k, "batch_size": summary["batch_size"],
        "events": int(histories.offsets[-1]), "wall_s": summary["seconds"], "users_per_s": summary["users_per_s"],
        "setup_s": round(setup_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "streaming_peak_rss_mb": round(_status_kb("VmHWM") / 1024) if streaming_hwm else None,
        "rss_before_streaming_mb": round(rss_before_kb / 1024),
        "histories_mb": round((histories.offsets.nbytes + histories.items.nbytes + histories.timestamps.nbytes
                               + histories.users.nbytes + histories.user_ids.nbytes) / 2**20, 1),
        "parquet_mb": round(size / 2**20, 1), "row_groups": groups, "devices": len(jax.devices()),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),  # > 2 on 2 cores: something else ran too
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "recommend.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(args.users[0], args.items, args.batch_sizes[0], args.k)))
        return 0
    cases = []
    for users in args.users:
        for batch_size in args.batch_sizes:
            command = [sys.executable, __file__, "--child", "--users", str(users), "--batch-sizes", str(batch_size),
                       "--items", str(args.items), "--k", str(args.k)]
            tick = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.stderr.write(done.stderr)
                return done.returncode
            case = json.loads(done.stdout.strip().splitlines()[-1])
            case["process_s"] = round(time.perf_counter() - tick, 1)
            case["command"] = (f"python scripts/bench_recommend.py --users {users} --batch-sizes {batch_size}"
                               f" --items {args.items} --k {args.k}")
            print(json.dumps(case), flush=True)
            cases.append(case)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    # Keep earlier cases of other sizes (the 1M run is long): one entry per (users, batch_size).
    kept = [case for case in previous.get("cases", [])
            if (case["users"], case["batch_size"]) not in {(c["users"], c["batch_size"]) for c in cases}]
    results = {"machine": machine(),
               "command": "python scripts/bench_recommend.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "model": "sasrec hidden 64, 2 blocks, 2 heads, max_length 50, untrained",
               "cases": sorted(kept + cases, key=lambda c: (c["users"], c["batch_size"]))}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
