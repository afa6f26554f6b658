"""Data pipeline benchmark: load + validate + clean + split + batch, time and peak memory.

Writes bench_results/data.json. Each case runs in its own process so peak RSS is its own.

    python scripts/bench_data.py                 # ML-1M (fetched into data/) and 25M synthetic events
    python scripts/bench_data.py --events 2000000  # a smaller synthetic table
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np
from bench_common import machine  # scripts/ is on the path when a script runs


def _pipeline(path, format_, result_queue):
    from stjax.data import build_sequences, load, make_split, preprocess

    timings = {}
    start = time.perf_counter()
    loaded = load(path, format_)
    timings["load_validate_s"] = time.perf_counter() - start
    t = time.perf_counter()
    log = preprocess(loaded.log, user_k=0, item_k=0)
    events = len(loaded.log)
    del loaded
    timings["preprocess_sort_s"] = time.perf_counter() - t
    t = time.perf_counter()
    split = make_split(log, "leave_one_out")
    timings["split_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sequences = build_sequences(split, max_length=50)
    timings["batch_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result_queue.put({
        "events": events, "users": log.num_users, "items": log.num_items,
        "train_sequences": int(len(sequences.train["items"])), **{k: round(v, 3) for k, v in timings.items()},
        "events_per_s": round(events / timings["total_s"]), "peak_rss_mb": round(peak_mb),
    })


def _run(path, format_):
    queue = mp.get_context("spawn").Queue()
    process = mp.get_context("spawn").Process(target=_pipeline, args=(str(path), format_, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def _write_synthetic(path: Path, events: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    users = max(1, events // 100)
    items = max(1, events // 500)
    chunk = 5_000_000
    writer = None
    for start in range(0, events, chunk):
        n = min(chunk, events - start)
        table = pa.table({
            "user": pa.array(np.char.add("u", rng.integers(0, users, n).astype(str))),
            "item": pa.array(np.char.add("i", rng.zipf(1.3, n).clip(max=items).astype(str))),
            "timestamp": rng.integers(1_600_000_000, 1_700_000_000, n),
            "behaviour": pa.array(np.array(["view", "click", "purchase"])[rng.integers(0, 3, n)]).dictionary_encode(),
            "latitude": rng.uniform(-60, 60, n),
            "longitude": rng.uniform(-170, 170, n),
        })
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=25_000_000)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="bench_results/data.json")
    args = parser.parse_args()
    results = {"machine": machine()}
    ml1m = Path(args.data_dir) / "ml-1m"
    if not ml1m.exists():
        from stjax.data.fetch import fetch

        fetch("ml-1m", args.data_dir)
    results["ml-1m"] = _run(ml1m, None)
    print("ml-1m", results["ml-1m"], flush=True)
    synthetic = Path(args.data_dir) / f"synthetic-{args.events}.parquet"
    if not synthetic.exists():
        start = time.perf_counter()
        _write_synthetic(synthetic, args.events)
        print(f"wrote {synthetic} in {time.perf_counter() - start:.1f} s", flush=True)
    results[f"synthetic_{args.events}"] = _run(synthetic, "parquet")
    print(f"synthetic_{args.events}", results[f"synthetic_{args.events}"], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
