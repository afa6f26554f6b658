"""What every benchmark records about the machine it ran on (imported by scripts/bench_*.py).

Numbers on these VMs move 2x between days and more under load, so each result file says when it
ran, on which CPU (model and the cores this process may use), with which JAX and backend, and
how loaded the machine was when the record was taken (a 1-minute load above the core count
means that something else was running too). Also the pieces the peer benchmarks share: the
spread of repeats, ratios taken per repeat, and `JsonWorker`, a peer's process answering JSON.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def xla_cost(compiled) -> dict:
    """XLA's cost analysis of a compiled computation (`jit(f).lower(...).compile()`): GFLOP, GB
    accessed and GB of temporaries."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    memory = compiled.memory_analysis()
    return {"gflop": round(analysis.get("flops", float("nan")) / 1e9, 3),
            "gb_accessed": round(analysis.get("bytes accessed", float("nan")) / 1e9, 3),
            "temp_gb": round(getattr(memory, "temp_size_in_bytes", float("nan")) / 1e9, 3)}


def machine() -> dict:
    """-> {date (UTC), cores (usable by this process), cpu, platform, python, jax, backend,
    devices, load_average (1, 5, 15 min)}. Imports JAX, so call it after any XLA_FLAGS are set."""
    import jax

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cores": cores,
            "cpu": cpu_model(), "platform": platform.platform(), "python": platform.python_version(),
            "jax": jax.__version__, "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def spread(seconds: list[float]) -> dict:
    """Median, best and worst of repeated timings, and the repeats themselves."""
    return {"median": round(statistics.median(seconds), 5), "best": round(min(seconds), 5),
            "worst": round(max(seconds), 5), "repeats": [round(s, 5) for s in seconds]}


def ratios(numerator: list[float], denominator: list[float]) -> dict:
    """numerator[r] / denominator[r] per repeat r (interleaved repeats share the machine's load):
    median, min and max."""
    per_repeat = [a / b for a, b in zip(numerator, denominator)]
    return {"median": round(statistics.median(per_repeat), 2), "min": round(min(per_repeat), 2),
            "max": round(max(per_repeat), 2)}


class JsonWorker:
    """A peer's benchmark worker in its own Python (`argv`, run in /tmp): its first JSON line is its
    `info`, then one JSON line answers each command written to its stdin. Lines that are not JSON
    (the peer's logging) are skipped. A worker that reports PyTorch's autograd anomaly detection on,
    at start or in an answer, is refused: that would time PyTorch's debugging mode."""

    def __init__(self, argv: list[str]):
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd="/tmp")
        self.info = self._read()
        if self.info.get("anomaly_detection", True):
            raise RuntimeError(f"worker reports autograd anomaly detection on: {self.info}")

    def _read(self) -> dict:
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("worker died:\n" + self.process.stderr.read()[-3000:])
            if line.startswith("{"):
                return json.loads(line)

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = self._read()
        if answer.get("anomaly_detection"):
            raise RuntimeError("the worker timed with autograd anomaly detection on")
        return answer

    def close(self):
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        self.process.wait(timeout=60)
