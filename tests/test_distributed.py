"""Multi-process runs on jax.distributed: processes on 127.0.0.1 only, each test under a timeout.

Every run below is `stjax train|evaluate --distributed` as a user starts it, one OS process per JAX
process (gloo collectives on CPU). The references are single-process runs of the same config: the
same losses, parameters and metrics to float tolerance. Also here, in this process: the watchdog,
the iterator's blocks (a global batch does not depend on the processes that build it) and the
CLI's checks of its options.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
STJAX = [sys.executable, "-m", "stjax.cli"]
TIMEOUT = 240


def _env(devices: int = 1) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LAUNCHED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_leftover_processes():
    """Whatever a test launched is killed when it ends, passed or failed (a stopped one too)."""
    yield
    while LAUNCHED:
        proc = LAUNCHED.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()


def _launch(command: list[str], processes: int, tmp: Path, name: str, devices: int = 1) -> list[subprocess.Popen]:
    """`processes` copies of `stjax COMMAND --distributed` on 127.0.0.1 (stdout/stderr to files)."""
    port = _port()
    procs = []
    for index in range(processes):
        with open(tmp / f"{name}-{index}.out", "w") as out, open(tmp / f"{name}-{index}.err", "w") as err:
            procs.append(subprocess.Popen(
                [*STJAX, *command, "--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes",
                 str(processes), "--process-id", str(index)], cwd=ROOT, env=_env(devices), stdout=out, stderr=err))
    LAUNCHED.extend(procs)
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = TIMEOUT) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    try:
        for proc in procs:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return codes


def _run(command: list[str], processes: int, tmp: Path, name: str, devices: int = 1) -> str:
    """Runs to the end; returns process 0's stdout. Fails with every process's stderr otherwise."""
    if processes == 1:
        done = subprocess.run([*STJAX, *command], cwd=ROOT, env=_env(devices), capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr[-3000:]
        (tmp / f"{name}.out").write_text(done.stdout)
        return done.stdout
    codes = _wait(_launch(command, processes, tmp, name, devices))
    errors = "\n".join((tmp / f"{name}-{i}.err").read_text()[-2000:] for i in range(processes))
    assert codes == [0] * processes, errors
    return (tmp / f"{name}-0.out").read_text()


def _train(experiment: str, workdir: Path, processes: int, tmp: Path, *overrides: str, devices: int = 1) -> dict:
    _run(["train", "--config", f"experiments/{experiment}:tiny", "--workdir", str(workdir), "--no-progress",
          *overrides], processes, tmp, workdir.name, devices)
    return json.loads((workdir / "results.json").read_text())


def _losses(workdir: Path) -> list[float]:
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line]


def _params(workdir: Path) -> dict:
    """The best checkpoint's parameters, flattened to {path: array} (restored in this process)."""
    import jax

    from stjax.train.build import load_model

    model, _ = load_model(workdir)
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(model.state.params))[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def _assert_same_run(one: Path, two: Path, results_one: dict, results_two: dict) -> None:
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=2e-5, atol=2e-6)
    params_one, params_two = _params(one), _params(two)
    assert params_one.keys() == params_two.keys()
    for name in params_one:
        if name.endswith("['key']['bias']"):
            # Softmax is shift-invariant, so the key projection's bias has a zero gradient in exact
            # arithmetic: Adam turns the rounding noise of the two runs into different steps of ~lr,
            # and the bias changes no score. Every other leaf agrees to ~1e-7.
            continue
        np.testing.assert_allclose(params_two[name], params_one[name], rtol=1e-4, atol=2e-6, err_msg=name)
    for part in ("valid", "test"):
        for metric, value in results_one[part].items():
            np.testing.assert_allclose(results_two[part][metric], value, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{part} {metric}")
    assert results_two["best_step"] == results_one["best_step"]


LONG = ["--config.train.num_epochs=40", "--config.train.eval_every_epochs=4", "--config.train.log_every=4",
        "--config.train.item_rows_multiple=2"]


# ----------------------------------------------------------------------------- two processes = one


@pytest.mark.parametrize("experiment", [
    "sasrec_synthetic.py",    # a sequence model
    "lightgcn_ml100k.py",     # a graph model with a run-wide context (the graph) and sampled negatives
    "recvae_ml100k.py",       # two parameter groups with alternating updates (bag batches, held-out users)
])
def test_two_processes_train_like_one(tmp_path, experiment):
    """The same losses step by step, the same parameters and the same metrics as one process whose
    batches are built in 2 blocks (the negatives of LightGCN's pairs are drawn per block)."""
    one = _train(experiment, tmp_path / "one", 1, tmp_path, "--config.train.batch_blocks=2")
    two = _train(experiment, tmp_path / "two", 2, tmp_path)
    _assert_same_run(tmp_path / "one", tmp_path / "two", one, two)
    # Only process 0 wrote the run files; the per-row test ranks (gathered across processes) equal.
    rows_one, rows_two = np.load(tmp_path / "one" / "test_rows.npz"), np.load(tmp_path / "two" / "test_rows.npz")
    np.testing.assert_array_equal(rows_two["ranks"], rows_one["ranks"])
    printed = [line for line in (tmp_path / "two-1.out").read_text().splitlines() if not line.startswith("[Gloo]")]
    assert printed == []  # process 1 printed nothing (gloo's own connection line aside)


def test_evaluate_and_recommend_on_two_processes_equal_one(tmp_path, reference):
    one = _run(["evaluate", "--workdir", str(reference[0])], 1, tmp_path, "eval1")
    two = _run(["evaluate", "--workdir", str(reference[0])], 2, tmp_path, "eval2")
    last = [json.loads(text.strip().splitlines()[-1]) for text in (one, two)]
    for part in ("valid", "test"):
        for metric, value in last[0][part].items():
            np.testing.assert_allclose(last[1][part][metric], value, rtol=1e-5, atol=1e-6)
    # Every user's top 5 scored on the devices of both processes (odd batch: the last is padded);
    # process 0 alone writes the file, and it equals the single process's.
    for name, processes in (("one", 1), ("two", 2)):
        _run(["recommend", "--workdir", str(reference[0]), "--users", "all", "--k", "5", "--batch-size", "6",
              "--out", str(tmp_path / f"{name}.jsonl")], processes, tmp_path, f"recommend-{name}")
    rows = [[json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
            for name in ("one", "two")]
    assert len(rows[0]) == len(rows[1]) == 64
    for a, b in zip(*rows):
        assert a["user"] == b["user"] and a["items"] == b["items"]
        np.testing.assert_allclose(b["scores"], a["scores"], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- failures and resume


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted single-process run of the LONG config: (workdir, results)."""
    tmp = tmp_path_factory.mktemp("reference")
    return tmp / "reference", _train("sasrec_synthetic.py", tmp / "reference", 1, tmp, *LONG)


def _first_checkpoint(workdir: Path, procs: list[subprocess.Popen], timeout: float = TIMEOUT) -> int:
    """Waits until the run has a complete checkpoint (a folder named by its step) and returns its step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = sorted(int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()) \
            if (workdir / "checkpoints").exists() else []
        if steps:
            return steps[0]
        assert all(proc.poll() is None for proc in procs), "a process ended before the first checkpoint"
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def _one_line_error(path: Path) -> str:
    lines = [line for line in path.read_text().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, path.read_text()[-3000:]
    assert "Traceback" not in path.read_text()
    return lines[0]


def test_killed_peer_stops_the_other_and_the_run_resumes_on_one_process(tmp_path, reference):
    """SIGKILL of process 1: process 0 ends within 60 s with one line and status 3; the checkpoint
    is intact and the same run, resumed on one process with 2 devices on a (data 1 x model 2)
    mesh, ends with the metrics and parameters of an uninterrupted single-process run."""
    workdir = tmp_path / "run"
    procs = _launch(["train", "--config", "experiments/sasrec_synthetic.py:tiny", "--workdir", str(workdir),
                     "--no-progress", *LONG], 2, tmp_path, "killed")
    _first_checkpoint(workdir, procs)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    codes = _wait(procs[:1], timeout=60)
    assert time.monotonic() - killed < 60
    _wait(procs[1:], timeout=5)
    assert codes == [3]
    message = _one_line_error(tmp_path / "killed-0.err")
    assert "process 0 of 2" in message and "peer" in message
    assert not (workdir / "results.json").exists()
    resumed = _train("sasrec_synthetic.py", workdir, 1, tmp_path, *LONG, "--config.train.model_parallel=2",
                     devices=2)
    assert "resumed from step" in (tmp_path / "run.out").read_text()
    _assert_same_run(reference[0], workdir, reference[1], resumed)


def test_stuck_peer_is_detected_by_the_watchdog(tmp_path):
    """A peer that is alive but stuck (SIGSTOP: it neither steps nor answers) makes process 0 end
    with one line and status 3 once --stall-timeout passes, not hang."""
    workdir = tmp_path / "run"
    procs = _launch(["train", "--config", "experiments/sasrec_synthetic.py:tiny", "--workdir", str(workdir),
                     "--no-progress", "--stall-timeout", "10", *LONG], 2, tmp_path, "stuck")
    try:
        _first_checkpoint(workdir, procs)
        procs[1].send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        codes = _wait(procs[:1], timeout=60)
        assert time.monotonic() - stopped < 60
    finally:
        procs[1].send_signal(signal.SIGKILL)
        _wait(procs[1:], timeout=5)
    assert codes == [3]
    assert "no progress for" in _one_line_error(tmp_path / "stuck-0.err")


def test_a_single_process_run_resumes_on_two_processes(tmp_path, reference):
    """Started on 1 process with 2 devices (mesh 1 x 2, the table split by rows), killed after its
    first checkpoint, resumed on 2 processes of 1 device (mesh 2 x 1): the uninterrupted run's result."""
    workdir = tmp_path / "run"
    proc = subprocess.Popen([*STJAX, "train", "--config", "experiments/sasrec_synthetic.py:tiny", "--workdir",
                             str(workdir), "--no-progress", *LONG, "--config.train.model_parallel=2",
                             "--config.train.batch_blocks=2"],
                            cwd=ROOT, env=_env(2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _first_checkpoint(workdir, [proc])
    finally:
        proc.kill()
        proc.wait()
    resumed = _train("sasrec_synthetic.py", workdir, 2, tmp_path, *LONG)
    assert "resumed from step" in (tmp_path / "run-0.out").read_text()
    _assert_same_run(reference[0], workdir, reference[1], resumed)


# ----------------------------------------------------------------------------- in this process


def test_blocks_make_batches_independent_of_the_process_count():
    from stjax.data.batching import BatchIterator, pairs_with_negatives

    rng = np.random.default_rng(0)
    pairs = {"users": rng.integers(1, 30, 101).astype(np.int32), "items": rng.integers(1, 50, 101).astype(np.int32)}
    builder = pairs_with_negatives(pairs, 50, 3)
    whole = BatchIterator(builder, 16, seed=7, blocks=4)
    shares = [BatchIterator(builder, 16, seed=7, process_index=p, process_count=2, blocks=4) for p in range(2)]
    for epoch, step in [(0, 0), (1, 3), (2, 6)]:  # step 6 of 7 is the partial last batch (101 = 6 x 16 + 5)
        expected = whole.batch(epoch, step)
        got = {k: np.concatenate([share.batch(epoch, step)[k] for share in shares]) for k in expected}
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])
    # One block is how batches were built before blocks existed: the rows, negatives from (seed, e, k, 0).
    single = BatchIterator(builder, 16, seed=7).batch(1, 2)
    rows = np.random.default_rng([7, 1]).permutation(101)[32:48]
    negatives = np.random.default_rng([7, 1, 2, 0]).integers(1, 51, (16, 3), dtype=np.int32)
    np.testing.assert_array_equal(single["users"], pairs["users"][rows])
    np.testing.assert_array_equal(single["negatives"], negatives)
    # The blocks travel with the position: a state saved with 4 blocks resumes on 1 process as 4.
    resumed = BatchIterator(builder, 16, seed=7)
    resumed.set_state({"epoch": 1, "step": 3, "blocks": 4})
    np.testing.assert_array_equal(next(resumed)["negatives"], whole.batch(1, 3)["negatives"])
    with pytest.raises(ValueError, match="cannot share"):
        BatchIterator(builder, 16, process_index=0, process_count=2).set_state({"epoch": 0, "step": 0, "blocks": 1})
    assert BatchIterator(builder, 16).get_state() == {"epoch": 0, "step": 0, "blocks": 1}


def test_watchdog_fires_only_without_progress():
    from stjax.distributed import Watchdog

    fired = []
    dog = Watchdog(0.3, on_stall=fired.append, poll=0.02)
    try:
        time.sleep(0.6)  # outside watch(): setup may take as long as it takes
        assert fired == []
        with dog.watch():
            for _ in range(20):  # beating: never fires
                dog.beat()
                time.sleep(0.05)
            assert fired == []
            with dog.paused():  # paused: never fires
                time.sleep(0.6)
            assert fired == []
            time.sleep(0.6)  # silent: fires once
        assert len(fired) == 1 and fired[0] > 0.3
    finally:
        dog.stop()


def test_distributed_options_are_checked():
    def cli(*args):
        return subprocess.run([*STJAX, *args], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)

    done = cli("train", "--config", "experiments/sasrec_synthetic.py:tiny", "--coordinator", "127.0.0.1:1")
    assert done.returncode == 2 and "need --distributed" in done.stderr
    done = cli("train", "--config", "experiments/sasrec_synthetic.py:tiny", "--distributed", "--coordinator",
               "127.0.0.1:1")
    assert done.returncode == 2 and "give all of --coordinator" in done.stderr
    done = cli("train", "--config", "experiments/sasrec_synthetic.py:tiny", "--distributed", "--coordinator",
               "127.0.0.1:1", "--num-processes", "2", "--process-id", "2")
    assert done.returncode == 2 and "--process-id 2: expected 0..1" in done.stderr
    assert "Traceback" not in done.stderr
    done = cli("train", "--config", "experiments/sasrec_synthetic.py:tiny", "--distributed", "--coordinator",
               "127.0.0.1:1", "--num-processes", "2", "--process-id", "0", "--stall-timeout", "200")
    assert done.returncode == 2 and "must be below --heartbeat-timeout" in done.stderr
    env = {k: v for k, v in _env().items()
           if not k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "KUBERNETES_", "TPU_"))}
    done = subprocess.run([*STJAX, "train", "--config", "experiments/sasrec_synthetic.py:tiny", "--distributed"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no cluster environment was detected" in done.stderr, done.stderr


def test_peer_failures_are_told_from_other_errors():
    from stjax.distributed import is_peer_failure

    assert is_peer_failure(ValueError("UNKNOWN: Gloo all-reduce failed: [pair.cc:547] Connection closed by peer"))
    assert is_peer_failure(RuntimeError("INTERNAL: Error dispatching computation: Gloo all-reduce failed: ... "
                                        "Connection reset by peer"))
    assert not is_peer_failure(ValueError("cannot read /scratch/gloo_runs/x.csv"))  # a path is not a peer
    assert not is_peer_failure(KeyError("Gloo"))
    assert not is_peer_failure(ValueError("bad value\nGloo all-reduce failed"))  # only the first line counts
