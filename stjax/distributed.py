"""Runs over several processes on JAX's multi-controller runtime (`jax.distributed`).

Every process runs the same command and the same step code: `initialize` joins the processes
(explicit coordinator, process count and id, or JAX's own cluster detection: Slurm, Open MPI,
Kubernetes Indexed Jobs, TPU VMs), after which `jax.devices()` lists the devices of all processes
and one mesh spans them. On CPU the collectives are gloo's. What happens when a process fails:

* a peer that dies makes the next collective fail on the others (gloo: "connection closed by
  peer"); `fail` turns that into one line on stderr and ends the process at once with status 3,
  skipping JAX's shutdown barrier (which would wait for the dead peer and then abort with a
  page of C++ log);
* a peer that is alive but stuck (JAX #38503: a rank that never enters the collective) leaves
  the others blocked inside one: `Watchdog` ends a process that has made no progress (no
  `beat()`: a training step, an evaluation batch) for `timeout` seconds, with the same one line;
* JAX's coordination service notices a process that stops sending heartbeats after
  `heartbeat_timeout_seconds`; the watchdog's timeout is kept below it so that the clear
  message comes first.

The last complete checkpoint stays intact (Orbax writes a step into a temporary folder and
renames it when every process has written its part), and the same command resumes, on the same
number of processes or another (`stjax.runs.checkpoints` restores onto the current mesh).

Nothing here imports the rest of stjax: the CLI calls `initialize` before anything touches a
device, and the training loop and evaluators call `beat`.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import jax


class DistributedError(Exception):
    """The processes could not be joined (a clear message; the CLI exits with status 2)."""


FAILED = 3  # exit status of a process ended because a peer failed (2 is a user error)

_watchdog: Watchdog | None = None
_joined = False


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, local_device_ids=None, initialization_timeout: int = 300, heartbeat_timeout_seconds: int = 100,
               shutdown_timeout_seconds: int = 60, stall_timeout: float = 0.0) -> None:
    """Joins this process to a multi-process run; the names follow `jax.distributed.initialize`.

    coordinator: "HOST:PORT" of process 0's coordination service (None: detected from the cluster's
    environment). stall_timeout: seconds without progress after which the watchdog ends this process
    (0: heartbeat_timeout_seconds * 0.8)."""
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise DistributedError("--distributed: give all of --coordinator HOST:PORT, --num-processes N and "
                               "--process-id I, or none of them (JAX then reads the cluster's environment: "
                               "Slurm, Open MPI, Kubernetes, TPU)")
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise DistributedError(f"--process-id {process_id}: expected 0..{num_processes - 1} "
                               f"(--num-processes {num_processes})")
    stall = stall_timeout or 0.8 * heartbeat_timeout_seconds
    if stall >= heartbeat_timeout_seconds:
        raise DistributedError(f"--stall-timeout {stall:g} must be below --heartbeat-timeout "
                               f"{heartbeat_timeout_seconds} (JAX would abort a silent peer's run first, with "
                               f"no clear message)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_collective_timeout_seconds" not in flags:
        # gloo gives up on a peer after 30 s by default: processes that drift apart that long (process 0
        # writing the run files, a loaded machine) are not a failure; a stuck peer is the watchdog's.
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_collective_timeout_seconds={int(stall) + 60}".strip()
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, local_device_ids=local_device_ids,
                                   initialization_timeout=initialization_timeout,
                                   heartbeat_timeout_seconds=heartbeat_timeout_seconds,
                                   shutdown_timeout_seconds=shutdown_timeout_seconds)
    except (RuntimeError, ValueError) as err:
        if coordinator is None and "coordinator_address should be defined" in str(err):
            raise DistributedError("--distributed without --coordinator: no cluster environment was detected "
                                   "(Slurm: SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS, SLURM_PROCID, "
                                   "SLURM_LOCALID; Open MPI: OMPI_MCA_orte_hnp_uri; a Kubernetes Indexed Job; a "
                                   "TPU VM); give --coordinator HOST:PORT, --num-processes N and --process-id I, "
                                   "or JAX_COORDINATOR_ADDRESS") from None
        where = coordinator or "the coordinator named by the cluster's environment"
        raise DistributedError(f"cannot join the run at {where} within {initialization_timeout} s "
                               f"({first_line(err)}); start every process with the same --coordinator and "
                               f"--num-processes, and check that process 0 is reachable") from None
    global _joined
    _joined = True
    start_watchdog(stall)


def joined() -> bool:
    """Whether `initialize` joined this process to a run (without touching a device)."""
    return _joined


def describe() -> str:
    """'process I of N' (for messages)."""
    return f"process {jax.process_index()} of {jax.process_count()}"


def beat(after=None) -> None:
    """Progress was made (a step, an evaluation batch): the watchdog's clock starts again. after: a
    device result of that work, waited for first while the watchdog watches (so a beat means done,
    not dispatched; the caller dispatches the next piece before, keeping one in flight)."""
    if _watchdog is not None:
        if after is not None and _watchdog.watching:
            jax.block_until_ready(after)
        _watchdog.beat()


def watching():
    """The `with` block the watchdog guards (the training loop): outside it, setup, restores, the
    final evaluation and the writes of process 0 may take as long as they take."""
    return _watchdog.watch() if _watchdog is not None else _NoPause()


def set_context(text: str) -> None:
    """What the watchdog's and `fail`'s message add: where the run is (e.g. its last checkpoint)."""
    if _watchdog is not None:
        _watchdog.context = text


class Watchdog:
    """A daemon thread that ends the process when `beat` has not been called for `timeout` seconds.

    It watches only inside `watch()` (the training loop); `paused()` suspends it there around work
    that may take long (compiling the step and the evaluation the first time, a checkpoint save)."""

    def __init__(self, timeout: float, on_stall=None, poll: float = 0.5):
        self.timeout, self.poll = float(timeout), poll
        self.context = ""
        self.on_stall = on_stall or (lambda seconds: fail(f"no progress for {seconds:.0f} s: a peer process "
                                                          f"died or hangs", self.context))
        self._last = time.monotonic()
        self._paused = 1  # armed by watch()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stjax-watchdog", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        self._last = time.monotonic()

    def paused(self):
        watchdog = self

        class _Paused:
            def __enter__(self):
                watchdog._paused += 1

            def __exit__(self, *exc):
                watchdog._paused -= 1
                watchdog.beat()

        return _Paused()

    @property
    def watching(self) -> bool:
        return self._paused == 0

    def watch(self):
        watchdog = self

        class _Watch:
            def __enter__(self):
                watchdog.beat()
                watchdog._paused -= 1

            def __exit__(self, *exc):
                watchdog._paused += 1

        return _Watch()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            idle = time.monotonic() - self._last
            if not self._paused and idle > self.timeout:
                self.on_stall(idle)
                return


class _NoPause:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def paused():
    """Suspends the watchdog (if any) for the `with` block."""
    return _watchdog.paused() if _watchdog is not None else _NoPause()


def start_watchdog(timeout: float) -> Watchdog:
    global _watchdog
    if _watchdog is not None:
        _watchdog.stop()
    _watchdog = Watchdog(timeout)
    return _watchdog


def fail(reason: str, context: str = "") -> None:
    """Ends this process of a multi-process run with one line on stderr and status 3, at once:
    JAX's shutdown would wait for peers that are gone."""
    context = context or (_watchdog.context if _watchdog is not None else "")
    sys.stdout.flush()
    message = f"error: {describe()}: {reason}"
    if context:
        message += f"; {context}"
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(FAILED)


def is_peer_failure(err: BaseException) -> bool:
    """Whether `err` says a collective or the coordination service lost a peer (read from the first
    line of an XLA/JAX runtime error only, so a path or a user's message cannot match)."""
    if not isinstance(err, (RuntimeError, ValueError)):
        return False
    text = first_line(err)
    return any(mark in text for mark in ("Gloo", "Connection closed by peer", "Connection reset by peer",
                                         "heartbeat", "UNAVAILABLE:", "DEADLINE_EXCEEDED:", "ncclInternalError",
                                         "ncclRemoteError", "remote process exited", "Barrier failed"))


def first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else err.__class__.__name__
