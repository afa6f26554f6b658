"""What every benchmark records about the machine it ran on (imported by scripts/bench_*.py).

Numbers on these VMs move 2x between days and more under load, so each result file says when it
ran, on which CPU (model and the cores this process may use), with which JAX and backend, and
how loaded the machine was when the record was taken (a 1-minute load above the core count
means that something else was running too).
"""

from __future__ import annotations

import datetime
import os
import platform
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
