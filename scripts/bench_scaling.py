"""Training throughput on 1, 2, 4 and 8 host devices and on 2 processes: `stjax train` as users run it.

    python scripts/bench_scaling.py                        # writes bench_results/scaling.json
    python scripts/bench_scaling.py --steps 60 --devices 1 2 --processes 2

Each setting is one `stjax train --config experiments/sasrec_synthetic.py --config.train.num_steps=S`
in a fresh run folder, in its own OS process(es): D host devices are XLA_FLAGS'
`--xla_force_host_platform_device_count=D` in one process (mesh data D x model 1); P processes are
`--distributed` on 127.0.0.1 with one device each (mesh P x 1, gloo collectives). The numbers are
the run's own `results.json` timings: `train_s` (the loop, without the first step's compile and
without evaluations; one evaluation at the last step) and the targets it trained, so steps/s =
(S - 1) / train_s and targets/s as `stjax train` prints it.

What this measures on a CPU-only machine: host "devices" and processes share the same cores, so
more of them cannot be faster; the table shows the overhead of splitting a step (per-device
dispatch, all-reduce of the gradients over gloo's TCP between processes) and that every setting
trains the same model (the final loss is recorded: equal across settings up to float rounding).
It says nothing about speed-up on real accelerators.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    # On 2 cores, D device threads of one process may wait > 40 s for each other under load: XLA's
    # in-process rendezvous would abort the run.
    env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={devices} "
                        f"--xla_cpu_collective_call_terminate_timeout_seconds=600")
    return env


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_args(config: str, workdir: Path, steps: int, batch_size: int) -> list[str]:
    return [sys.executable, "-m", "stjax.cli", "train", "--config", config, "--workdir", str(workdir),
            "--no-progress", f"--config.train.num_steps={steps}", f"--config.train.eval_every={steps}",
            f"--config.train.batch_size={batch_size}", f"--config.train.log_every={max(1, steps // 4)}",
            "--config.train.batch_blocks=8"]


def one_setting(config: str, steps: int, batch_size: int, devices: int, processes: int, timeout: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="stjax-scaling-"))
    try:
        base = train_args(config, workdir / "run", steps, batch_size)
        if processes == 1:
            done = subprocess.run(base, cwd=ROOT, env=_env(devices), capture_output=True, text=True, timeout=timeout)
            if done.returncode:
                raise RuntimeError(done.stderr[-2000:])
        else:
            port = _port()
            procs = [subprocess.Popen(base + ["--distributed", "--coordinator", f"127.0.0.1:{port}",
                                              "--num-processes", str(processes), "--process-id", str(index)],
                                      cwd=ROOT, env=_env(devices), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True) for index in range(processes)]
            try:
                errors = [proc.communicate(timeout=timeout)[1] for proc in procs]
            finally:
                for proc in procs:
                    if proc.poll() is None:
                        proc.kill()
            if any(proc.returncode for proc in procs):
                raise RuntimeError("\n".join(error[-1000:] for error in errors))
        results = json.loads((workdir / "run" / "results.json").read_text())
        losses = [json.loads(line) for line in (workdir / "run" / "metrics.jsonl").read_text().splitlines()]
        timings = results["timings"]
        return {"devices": devices * processes, "processes": processes, "steps": results["steps"],
                "train_s": timings["train_s"], "compile_s": timings["compile_s"],
                "steps_per_s": round((results["steps"] - 1) / timings["train_s"], 2),
                "targets_per_s": timings["train_targets_per_s"],
                "final_loss": [line["loss"] for line in losses if "loss" in line][-1],
                "train_step_compiles": timings["train_step_compiles"]}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/sasrec_synthetic.py")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--devices", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--processes", type=int, nargs="*", default=[2])
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "scaling.json"))
    args = parser.parse_args()
    settings = [(devices, 1) for devices in args.devices] + [(1, processes) for processes in args.processes]
    rows = []
    for devices, processes in settings:
        row = one_setting(args.config, args.steps, args.batch_size, devices, processes, args.timeout)
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {"command": " ".join(["scripts/bench_scaling.py", *sys.argv[1:]]), "machine": machine(),
              "config": args.config, "steps": args.steps, "batch_size": args.batch_size, "rows": rows,
              "note": "host devices and processes share this machine's cores: overhead, not speed-up"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
