"""Time to accuracy, SASRec on ml-100k: stjax and RecBole 1.2.1 one after the other in the same run.

    python scripts/bench_time_to_accuracy.py --recbole-python /tmp/rbvenv/bin/python   # opt-in: about 1-2 hours

Each side runs with its own recommended settings and stops early on validation NDCG@10:

- stjax: `stjax train --config experiments/sasrec_ml100k.py` (batch 256, length 50, every position
  of each user's last window, up to 150 epochs, validation every 10 epochs, patience 5);
- RecBole: its SASRec.yaml and overall.yaml defaults (batch 2048, length 50, dropout 0.5, up to 300
  epochs, validation after every epoch, stopping after 10 without improvement), same protocol as
  stjax (leave-one-out by time, full ranking), autograd anomaly detection off
  (scripts/recbole_sasrec.py fit).

The stated accuracy is RecBole's own final test NDCG@10 (its best-validation model on test). For
each side the wall time is from process start to the end of its final test evaluation (data
loading, compilation, training, validations, the test pass): what a user waits for to get that
number. A side whose final test NDCG@10 is below the target has not reached it, and the JSON says so.
Each run is its own process; the machine's 1-minute load average is sampled every 10 s during each.
Writes bench_results/time_to_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_common import machine  # scripts/ is on the path when a script runs

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str], limit_s: float, on_line=None) -> dict:
    """Runs `command`, returns wall seconds, output lines, exit status and load averages sampled during it."""
    loads, lines = [], []
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    stop = threading.Event()

    def sample():
        while not stop.wait(10):
            loads.append(round(os.getloadavg()[0], 2))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timer = threading.Timer(limit_s, process.kill)
    timer.start()
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if on_line:
            on_line(line)
    status = process.wait()
    timer.cancel()
    stop.set()
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 1), "status": status, "timed_out": wall >= limit_s and status != 0,
            "load_average_1m": {"min": min(loads, default=None), "max": max(loads, default=None),
                                "mean": round(sum(loads) / len(loads), 2) if loads else None, "samples": len(loads)},
            "lines": lines}


def run_stjax(workdir: Path, limit_s: float) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    stjax = str(Path(sys.executable).parent / "stjax")
    command = [stjax, "train", "--config", "experiments/sasrec_ml100k.py", "--workdir", str(workdir), "--no-progress"]
    result = timed(command, limit_s)
    out = {"command": " ".join(["stjax"] + command[1:]), **{k: v for k, v in result.items() if k != "lines"}}
    results = workdir / "results.json"
    if results.exists():
        data = json.loads(results.read_text())
        out |= {"test": {k: data["test"][k] for k in ("ndcg@10", "hr@10", "mrr@10")},
                "valid_ndcg@10": data["valid"]["ndcg@10"], "best_step": data["best_step"], "steps": data["steps"],
                "stopped_early": data["stopped_early"], "timings": data.get("timings")}
    else:
        out["tail"] = result["lines"][-30:]
    return out


def run_recbole(python: str, data_dir: str, limit_s: float, threads: int = 0) -> dict:
    history = []

    def on_line(line):
        if line.startswith("EPOCH "):
            history.append(json.loads(line[6:]))
            print(f"recbole epoch {len(history)}: {history[-1]}", flush=True)

    command = [python, str(ROOT / "scripts" / "recbole_sasrec.py"), "fit", str(Path(data_dir).absolute()), "ml-100k",
               str(threads)]
    result = timed(command, limit_s, on_line)
    out = {"command": f"PY scripts/recbole_sasrec.py fit {data_dir} ml-100k {threads}",
           **{k: v for k, v in result.items() if k != "lines"}}
    for line in result["lines"]:
        if line.startswith("RESULT "):
            out |= json.loads(line[7:])
            out["test"] = {k: out["test"][k] for k in ("ndcg@10", "hit@10", "mrr@10")}
    if "test" not in out:
        out["history"] = history
        out["tail"] = result["lines"][-30:]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recbole-python", required=True)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--order", choices=["stjax-first", "recbole-first"], default="stjax-first")
    parser.add_argument("--limit-minutes", type=float, default=240.0, help="per side; a run past it is stopped")
    parser.add_argument("--recbole-threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument("--sides", default="stjax,recbole", help="which runs, comma-separated")
    parser.add_argument("--out", default="bench_results/time_to_accuracy.json")
    args = parser.parse_args(argv)

    results = {
        "command": "python scripts/bench_time_to_accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "order": args.order,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sides = {"stjax": lambda: run_stjax(Path(tempfile.gettempdir()) / "stjax_tta_sasrec_ml100k", args.limit_minutes * 60),
             "recbole": lambda: run_recbole(args.recbole_python, args.data_dir, args.limit_minutes * 60,
                                            args.recbole_threads)}
    order = ["stjax", "recbole"] if args.order == "stjax-first" else ["recbole", "stjax"]
    order = [side for side in order if side in args.sides.split(",")]
    for side in order:
        print(f"running {side} ...", flush=True)
        results[side] = sides[side]()
        print(side, {k: v for k, v in results[side].items() if k in ("wall_s", "test", "status")}, flush=True)
        out.write_text(json.dumps(results, indent=2))  # partial results survive a stopped run
    if "test" in results.get("recbole", {}) and "test" in results.get("stjax", {}):
        target = results["recbole"]["test"]["ndcg@10"]
        results["target_test_ndcg@10"] = target
        results["stjax_reached_target"] = results["stjax"]["test"]["ndcg@10"] >= target
        results["wall_ratio recbole/stjax"] = round(results["recbole"]["wall_s"] / results["stjax"]["wall_s"], 2)
        print({k: results[k] for k in ("target_test_ndcg@10", "stjax_reached_target", "wall_ratio recbole/stjax")})
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
