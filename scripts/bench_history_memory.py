"""Peak memory of `stjax recommend --history FILE` against the number of users in the file.

    python scripts/bench_history_memory.py --workdir RUN [--users 20000 200000] [--out bench_results/history_memory.json]

Writes a JSONL history file of N new users (5..39 known items each, drawn from the run's vocabulary,
seed 0) and runs `stjax recommend` on it in a child process; the child's peak resident memory
(getrusage RUSAGE_CHILDREN ru_maxrss) and wall time go to the JSON. A streamed reader keeps the
peak flat once the file holds more users than one chunk (16,384).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_file(path: Path, vocab: dict, users: int) -> None:
    items = vocab["items"][1:]
    rng = np.random.default_rng(0)
    with open(path, "w") as handle:
        for user in range(users):
            count = int(rng.integers(5, 40))
            chosen = [items[i] for i in rng.integers(0, len(items), count)]
            handle.write(json.dumps({"user": f"new{user}", "items": chosen,
                                     "timestamps": list(range(1_700_000_000, 1_700_000_000 + count))}) + "\n")


def measure(workdir: str, path: Path, out: Path) -> dict:
    """One child process per measurement, so that ru_maxrss is that run's peak alone."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t)")
    stjax = str(Path(sys.executable).parent / "stjax")
    done = subprocess.run([sys.executable, "-c", code, stjax, "recommend", "--workdir", workdir, "--history",
                           str(path), "--k", "10", "--out", str(out), "--no-progress"],
                          check=True, capture_output=True, text=True)
    peak_kib, seconds = done.stdout.split()
    return {"peak_rss_mib": round(int(peak_kib) / 1024, 1), "seconds": round(float(seconds), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--users", type=int, nargs="*", default=[20_000, 200_000])
    parser.add_argument("--out", default="bench_results/history_memory.json")
    args = parser.parse_args()
    vocab = json.loads((Path(args.workdir) / "vocab.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for users in args.users:
            path = Path(root) / f"h{users}.jsonl"
            write_file(path, vocab, users)
            row = {"users": users, "file_mib": round(path.stat().st_size / 2**20, 1),
                   **measure(args.workdir, path, Path(root) / "top.jsonl")}
            print(json.dumps(row), flush=True)
            rows.append(row)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
