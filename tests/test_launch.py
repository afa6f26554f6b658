"""The launch recipes in scripts/launch/: each parses, its pieces agree, and each runs here as far as
one machine allows.

local.sh runs for real (2 CPU processes of the tiny SASRec to a results.json; a bad config;
stand-in commands that fail, ignore SIGTERM or hang, to check the exit status and that no process
is left behind). slurm.sbatch runs for real under a stand-in `srun` that starts its tasks on this
machine with the variables JAX's SlurmCluster reads. The Kubernetes Job's container command runs
for real with the coordinator moved to 127.0.0.1; the TPU script runs under a stand-in `gcloud`.
No Slurm, Kubernetes or TPU exists here: their own parts (sbatch, the Job controller, DNS, the
TPU metadata server) are checked statically only.
"""

from __future__ import annotations

import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "scripts" / "launch"
BIN = Path(sys.executable).parent  # this venv's stjax
TIMEOUT = 240
TINY = ["--config", "experiments/sasrec_synthetic.py:tiny", "--no-progress"]
# Variables through which JAX would detect a cluster (or restrict devices): none may leak in.
CLUSTER_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "KUBERNETES_", "TPU_", "MEGASCALE_", "JAX_COORDINATOR",
                    "JAX_LOCAL_DEVICE_IDS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES")


def _env(marker: str = "", devices: int = 1, **extra: str) -> dict:
    """A clean CPU environment; `marker` tags every descendant (see `_descendants`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER_PREFIXES)}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    if marker:
        env["STJAX_LAUNCH_TEST"] = marker
    env.update(extra)
    return env


def _descendants(marker: str) -> list[int]:
    """Live processes that inherited the marker: whatever a launcher left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"STJAX_LAUNCH_TEST={marker}".encode() in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


def _assert_none_left(marker: str) -> None:
    deadline = time.monotonic() + 5  # a killed process needs a moment to leave /proc
    while _descendants(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _descendants(marker)
    for pid in left:  # do not leave them to the next test either
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"processes left behind: {left}"


def _local(args: list[str], env: dict, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["bash", str(LAUNCH / "local.sh"), *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if "STJAX_LAUNCH_TEST" in env:  # a launcher that hangs: its processes go with the test
            for pid in _descendants(env["STJAX_LAUNCH_TEST"]):
                os.kill(pid, signal.SIGKILL)
        raise


def _lines(text: str, process: int) -> list[str]:
    """The lines of one process in local.sh's output, without their prefix."""
    tag = f"[{process}] "
    return [line[len(tag):] for line in text.splitlines() if line.startswith(tag)]


# ----------------------------------------------------------------------------- every recipe parses


def test_the_recipes_are_there_and_parse():
    names = sorted(p.name for p in LAUNCH.iterdir())
    assert names == ["k8s-indexed-job.yaml", "local.sh", "slurm.sbatch", "tpu-slice.sh"]
    for script in ("local.sh", "slurm.sbatch", "tpu-slice.sh"):
        done = subprocess.run(["bash", "-n", str(LAUNCH / script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script}: {done.stderr}"
    # The proof that bash -n can fail here: a script with a syntax error is refused.
    assert subprocess.run(["bash", "-n", "-c", "if true; then"], capture_output=True).returncode != 0
    assert len(list(yaml.safe_load_all((LAUNCH / "k8s-indexed-job.yaml").read_text()))) == 3


# ----------------------------------------------------------------------------- local.sh


FAKE_STJAX = r"""#!/usr/bin/env bash
# A stand-in for stjax: says what it got, then behaves as FAKE_MODE says.
id=-1 prev=
for arg in "$@"; do [[ $prev == --process-id ]] && id=$arg; prev=$arg; done
echo "argv: $*"
echo "env: JAX_PLATFORMS=${JAX_PLATFORMS-unset} CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"
echo "to stderr from $id" >&2
case $FAKE_MODE in
    ok) exit 0 ;;
    fail1) [[ $id == 1 ]] && { sleep 1; exit 5; }; sleep 300 & wait ;;       # its child must go too
    stubborn) trap '' TERM; [[ $id == 1 ]] && { sleep 1; exit 7; }; sleep 300 & wait ;;
    hang) sleep 300 & wait ;;
esac
"""


@pytest.fixture
def fake_stjax(tmp_path) -> str:
    path = tmp_path / "fake-stjax"
    path.write_text(FAKE_STJAX)
    path.chmod(0o755)
    return str(path)


def test_local_passes_each_process_its_id_and_prefixes_its_output(fake_stjax):
    env = _env(STJAX=fake_stjax, FAKE_MODE="ok", GPUS_PER_PROCESS="2")
    done = _local(["3", "train", "--config", "a b.py", "--workdir", "/tmp/w"], env, timeout=60)
    assert done.returncode == 0, done.stderr
    ports = set()
    for process in range(3):
        argv, environment = _lines(done.stdout, process)
        head, coordinator = argv.split(" --coordinator ")
        assert head == "argv: train --config a b.py --workdir /tmp/w --distributed"
        address, rest = coordinator.split(" ", 1)
        assert rest == f"--num-processes 3 --process-id {process}"
        assert address.startswith("127.0.0.1:")
        ports.add(address)
        gpus = ",".join(str(2 * process + k) for k in range(2))
        assert environment == f"env: JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES={gpus}"
        assert _lines(done.stderr, process) == [f"to stderr from {process}"]
    assert len(ports) == 1  # one coordinator for all


def test_local_refuses_its_own_options_and_bad_counts(fake_stjax):
    env = _env(STJAX=fake_stjax, FAKE_MODE="ok")
    for args in (["2", "train", "--process-id", "1"], ["2", "train", "--distributed"], ["0", "train"], ["x"]):
        done = _local(args, env, timeout=30)
        assert done.returncode == 2 and "argv:" not in done.stdout, args


def test_local_with_one_process_is_the_plain_command(fake_stjax):
    done = _local(["1", "train", "--workdir", "w"], _env(STJAX=fake_stjax, FAKE_MODE="ok"), timeout=30)
    assert done.returncode == 0 and done.stdout.splitlines()[0] == "argv: train --workdir w"


@pytest.mark.parametrize("mode, status", [("fail1", 5), ("stubborn", 7)])
def test_local_stops_the_others_when_one_fails(fake_stjax, mode, status):
    """Process 1 exits with `status` after 1 s while the others would run 300 s (with a child of
    their own; `stubborn` ones ignore SIGTERM): the script exits with that status within seconds
    and nothing it started is left."""
    marker = uuid.uuid4().hex
    started = time.monotonic()
    done = _local(["3", "train"], _env(marker, STJAX=fake_stjax, FAKE_MODE=mode, GRACE="2"), timeout=60)
    assert done.returncode == status, done.stderr
    assert time.monotonic() - started < 30
    assert f"local.sh: process 1 exited with status {status}; stopping the others" in done.stderr
    _assert_none_left(marker)


def test_local_stops_every_process_on_sigterm(fake_stjax):
    marker = uuid.uuid4().hex
    launcher = subprocess.Popen(["bash", str(LAUNCH / "local.sh"), "2", "train"], cwd=ROOT,
                                env=_env(marker, STJAX=fake_stjax, FAKE_MODE="hang"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(_descendants(marker)) < 5 and time.monotonic() < deadline:  # launcher, 2 x (fake, sleep)
            time.sleep(0.1)
        assert len(_descendants(marker)) >= 5
        launcher.send_signal(signal.SIGTERM)
        _, stderr = launcher.communicate(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 128 + signal.SIGTERM, stderr
    _assert_none_left(marker)


def test_local_lists_each_process_devices_together(tmp_path):
    """The ordering the recipes' mesh comments rely on, on CPU: 2 processes of 3 devices each;
    jax.devices() lists process 0's then process 1's, so make_mesh(model_parallel=3) makes each
    row of the mesh (one 'data' index) one process's devices."""
    program = tmp_path / "devices.py"
    program.write_text(textwrap.dedent("""
        import sys
        import jax
        from stjax import distributed
        from stjax.train.state import make_mesh
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))  # after --distributed: --coordinator A ...
        distributed.initialize(args["--coordinator"], int(args["--num-processes"]), int(args["--process-id"]))
        mesh = make_mesh(model_parallel=3)
        rows = [[device.process_index for device in row] for row in mesh.devices]
        print("devices", [device.process_index for device in jax.devices()], "rows", rows, flush=True)
    """))
    stjax = f"{shlex.quote(sys.executable)} {shlex.quote(str(program))}"  # local.sh's STJAX: any program
    done = _local(["2", "devices"], _env(devices=3, STJAX=stjax), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    for process in range(2):
        assert "devices [0, 0, 0, 1, 1, 1] rows [[0, 0, 0], [1, 1, 1]]" in _lines(done.stdout, process), \
            done.stdout + done.stderr


def test_local_trains_on_two_cpu_processes(tmp_path):
    marker = uuid.uuid4().hex
    workdir = tmp_path / "run"
    done = _local(["2", "train", *TINY, "--workdir", str(workdir)], _env(marker))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (workdir / "results.json").exists()
    # Two processes joined (gloo's line from each rank); process 0 spoke for the run, 1 stayed silent.
    assert any(line.startswith("[Gloo] Rank 0 is connected to 1 peer") for line in _lines(done.stdout, 0))
    assert [line for line in _lines(done.stdout, 1) if not line.startswith("[Gloo] Rank 1 is connected")] == []
    assert any(f"results in {workdir}/results.json" in line for line in _lines(done.stdout, 0))
    _assert_none_left(marker)


def test_local_exits_with_the_error_of_a_bad_config(tmp_path):
    marker = uuid.uuid4().hex
    done = _local(["2", "train", "--config", "experiments/no_such.py", "--workdir", str(tmp_path / "run")],
                  _env(marker))
    assert done.returncode == 2, done.stderr[-3000:]
    assert any("error:" in line and "no_such.py" in line for line in _lines(done.stderr, 0)), done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    _assert_none_left(marker)


# ----------------------------------------------------------------------------- slurm.sbatch

FAKE_SRUN = r"""#!/usr/bin/env bash
# A stand-in for srun on one machine: SLURM_NTASKS tasks of the command, one per "node", with the
# variables a step's tasks get (those JAX's SlurmCluster reads among them).
printf '%s\n' "$*" >"$SRUN_LOG/argv"
printf '%s\n' "${JAX_LOCAL_DEVICE_IDS-unset}" >"$SRUN_LOG/local_device_ids"
[[ -n ${SRUN_DRY:-} ]] && exit 0
while [[ $1 == -* ]]; do shift; done
pids=()
for ((task = 0; task < SLURM_NTASKS; task++)); do
    SLURM_PROCID=$task SLURM_LOCALID=0 SLURM_NODEID=$task SLURM_STEP_NODELIST=127.0.0.1 \
        SLURM_STEP_NUM_NODES=$SLURM_NTASKS SLURM_STEP_NUM_TASKS=$SLURM_NTASKS "$@" >"$SRUN_LOG/task-$task.out" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
"""


def _sbatch_lines() -> list[str]:
    return (LAUNCH / "slurm.sbatch").read_text().splitlines()


def test_sbatch_asks_two_nodes_and_srun_relies_on_detection():
    lines = _sbatch_lines()
    options = [line.split(None, 1)[1] for line in lines if line.startswith("#SBATCH ")]
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    assert all(i < first_command for i, line in enumerate(lines) if line.startswith("#SBATCH"))  # sbatch stops there
    assert {"--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8"} <= set(options)
    sruns = [line for line in lines if line.startswith("srun ")]
    assert len(sruns) == 1
    words = shlex.split(sruns[0])
    assert "--distributed" in words and "stjax" in words
    assert not any(word.startswith(("--process-id", "--coordinator", "--num-processes")) for word in words)
    assert "--kill-on-bad-exit=1" in words
    assert any(line.startswith("source ") and "bin/activate" in line for line in lines)


def _free_port_in_slurm_range() -> int:
    """A free port of the range JAX derives from the job id (61440 + id % 4096)."""
    for _ in range(200):
        port = random.randint(61440, 65535)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 61440..65535")


def _stand_in(tmp_path: Path, name: str, script: str) -> tuple[Path, Path]:
    """An executable `name` running `script` in tmp_path/bin (to put first on PATH) and its log folder
    tmp_path/name: (bin folder, log folder)."""
    bin_dir, log = tmp_path / "bin", tmp_path / name
    bin_dir.mkdir()
    log.mkdir()
    (bin_dir / name).write_text(script)
    (bin_dir / name).chmod(0o755)
    return bin_dir, log


@pytest.fixture
def fake_slurm(tmp_path):
    """(environment for `bash slurm.sbatch`, srun's log folder)."""
    bin_dir, log = _stand_in(tmp_path, "srun", FAKE_SRUN)
    job_id = _free_port_in_slurm_range() - 61440 + 4096 * 37  # JAX's coordinator port is then free
    env = _env(SLURM_JOB_ID=str(job_id), SLURM_NTASKS="2", SLURM_JOB_NUM_NODES="2", SLURM_JOB_NAME="stjax",
               SLURM_SUBMIT_DIR=str(ROOT), STJAX_VENV=str(BIN.parent), SRUN_LOG=str(log))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env, log


def _sbatch(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LAUNCH / "slurm.sbatch"), *args], cwd="/", env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)


def test_sbatch_gives_each_process_its_node_gpus(fake_slurm):
    env, log = fake_slurm
    env.update(SRUN_DRY="1", SLURM_GPUS_PER_NODE="h100:3")
    done = _sbatch(["train", "--config", "experiments/x.py", "--workdir", "/shared/x"], env)
    assert done.returncode == 0, done.stderr
    assert (log / "local_device_ids").read_text().strip() == "0,1,2"
    assert (log / "argv").read_text().split() == ["--kill-on-bad-exit=1", "--ntasks-per-node=1", "stjax", "train",
                                                  "--config", "experiments/x.py", "--workdir", "/shared/x",
                                                  "--distributed"]
    done = _sbatch(["train", "--config", "experiments/x.py"], env)  # no --workdir: refused
    assert done.returncode == 2 and "--workdir" in done.stderr


def test_sbatch_runs_two_tasks_joined_by_jax_slurm_detection(fake_slurm, tmp_path):
    """Two tasks with SLURM_* as Slurm sets them (coordinator: the first node, 127.0.0.1, on the
    port derived from SLURM_JOB_ID) and `stjax train --distributed` with no address: they join as
    processes 0 and 1 of 2 and train to a results.json. JAX_LOCAL_DEVICE_IDS is set as on a GPU
    node (one "GPU" here; CPU devices ignore it): it does not turn the detection off."""
    env, log = fake_slurm
    env["SLURM_GPUS_PER_NODE"] = "1"
    workdir = tmp_path / "run"
    done = _sbatch(["train", *TINY, "--workdir", str(workdir)], env)
    tasks = [(log / f"task-{task}.out").read_text() for task in range(2)]
    assert done.returncode == 0, done.stderr + "\n".join(text[-2000:] for text in tasks)
    assert (workdir / "results.json").exists()
    assert (log / "local_device_ids").read_text().strip() == "0"
    for task, text in enumerate(tasks):
        assert f"[Gloo] Rank {task} is connected to 1 peer ranks" in text
    assert f"results in {workdir}/results.json" in tasks[0]
    assert [line for line in tasks[1].splitlines() if not line.startswith("[Gloo]")] == []  # process 1: silent


# ----------------------------------------------------------------------------- k8s-indexed-job.yaml


def _k8s() -> tuple[dict, dict, dict]:
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all((LAUNCH / "k8s-indexed-job.yaml").read_text())}
    return documents["Job"], documents["Service"], documents["PersistentVolumeClaim"]


def _container(job: dict) -> tuple[dict, dict]:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return container, {item["name"]: item["value"] for item in container["env"]}


def test_k8s_job_service_and_volume_agree():
    job, service, claim = _k8s()
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container, env = _container(job)
    name, service_name = job["metadata"]["name"], service["metadata"]["name"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] == int(env["NUM_PROCESSES"]) == 2
    assert pod["restartPolicy"] == "Never" and spec["backoffLimit"] == 0
    # The coordinator is pod 0 under the headless Service that the pods name as their subdomain.
    assert service["spec"]["clusterIP"] == "None"
    assert pod["subdomain"] == service_name
    assert service["spec"]["selector"] == {"job-name": name}
    host, port = env["COORDINATOR"].rsplit(":", 1)
    assert host == f"{name}-0.{service_name}"
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    assert int(port) in [p["containerPort"] for p in container["ports"]]
    # The command passes the addresses explicitly, the index from the Job controller.
    assert container["command"] == ["bash", "-c"]
    words = shlex.split(container["args"][0])
    assert words[:2] == ["exec", "stjax"]
    flags = dict(zip(words, words[1:]))
    assert flags["--coordinator"] == "$COORDINATOR" and flags["--num-processes"] == "$NUM_PROCESSES"
    assert flags["--process-id"] == "$JOB_COMPLETION_INDEX" and "--distributed" in words
    # One process per node: all its GPUs visible to it, and the model axis one node wide.
    gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
    assert env["JAX_LOCAL_DEVICE_IDS"] == ",".join(map(str, range(gpus)))
    assert f"--config.train.model_parallel={gpus}" in words
    # The runs live on the shared claim.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    runs = next(n for n, v in volumes.items() if "persistentVolumeClaim" in v)
    assert volumes[runs]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert env["WORKDIR"].startswith(mounts[runs] + "/")


def test_k8s_container_command_trains(tmp_path):
    """The container's command as the pod runs it (its env, JOB_COMPLETION_INDEX from the
    controller), with one process, the coordinator on 127.0.0.1, the tiny config and 8 CPU devices
    for its model_parallel=8: a results.json."""
    job, _, _ = _k8s()
    container, env = _container(job)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tmp_path / "run"
    run_env = _env(devices=8, **env)
    run_env.update(COORDINATOR=f"127.0.0.1:{port}", NUM_PROCESSES="1", JOB_COMPLETION_INDEX="0",
                   CONFIG="experiments/sasrec_synthetic.py:tiny", WORKDIR=str(workdir))
    done = subprocess.run([*container["command"], *container["args"]], cwd=ROOT, env=run_env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (workdir / "results.json").exists()


# ----------------------------------------------------------------------------- tpu-slice.sh

FAKE_GCLOUD = r"""#!/usr/bin/env bash
# A stand-in for gcloud: records its arguments (NUL-separated), lists an archive it is asked to copy.
calls=("$GCLOUD_LOG"/call-*)
[[ -e ${calls[0]} ]] || calls=()
printf '%s\0' "$@" >"$GCLOUD_LOG/call-${#calls[@]}"
[[ $4 == scp ]] && tar -tzf "$5" >"$GCLOUD_LOG/archive"
exit 0
"""


@pytest.fixture
def fake_gcloud(tmp_path):
    bin_dir, log = _stand_in(tmp_path, "gcloud", FAKE_GCLOUD)
    env = _env(GCLOUD_LOG=str(log), PROJECT="my-project")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"

    def calls() -> list[list[str]]:
        files = sorted(log.glob("call-*"), key=lambda path: int(path.name.split("-")[1]))
        return [path.read_text().split("\0")[:-1] for path in files]

    return env, log, calls


def _tpu(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LAUNCH / "tpu-slice.sh"), *args], cwd="/", env=env, capture_output=True,
                          text=True, timeout=60)


def test_tpu_runs_the_command_on_every_worker(fake_gcloud, tmp_path):
    """One `gcloud ... ssh --worker=all --command C`; C, run in a shell as each host would (with a
    stand-in venv whose stjax records its arguments), gives stjax exactly the arguments given
    (spaces, quotes and $ survive) plus --distributed, and no address: JAX's TPU detection supplies it."""
    env, log, calls = fake_gcloud
    args = ["train", "--config", "experiments/sasrec_ml1m.py", "--workdir", "/mnt/runs/a b",
            "--config.model.name=$HOME 'x'"]
    remote = tmp_path / "remote"
    (remote / ".venv" / "bin").mkdir(parents=True)
    (remote / ".venv" / "bin" / "activate").write_text(f'PATH="{remote / ".venv" / "bin"}:$PATH"\n')
    (remote / ".venv" / "bin" / "stjax").write_text(f"#!/usr/bin/env bash\nprintf '%s\\0' \"$@\" >{log}/stjax\n")
    (remote / ".venv" / "bin" / "stjax").chmod(0o755)
    env["REMOTE_DIR"] = str(remote)
    done = _tpu(["my-tpu", "us-central2-b", *args], env)
    assert done.returncode == 0, done.stderr
    [call] = calls()
    assert call[:6] == ["compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--zone"]
    assert "--worker=all" in call and call[call.index("--project") + 1] == "my-project"
    command = call[call.index("--command") + 1]
    ran = subprocess.run(["bash", "-c", command], cwd="/", env=env, capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0, ran.stderr
    assert (log / "stjax").read_text().split("\0")[:-1] == [*args, "--distributed"]


def test_tpu_setup_copies_the_checkout_and_installs_jax_tpu(fake_gcloud):
    env, log, calls = fake_gcloud
    done = _tpu(["my-tpu", "us-central2-b", "setup"], env)
    assert done.returncode == 0, done.stderr
    scp, ssh = calls()
    assert scp[3] == "scp" and scp[5] == "my-tpu:stjax.tar.gz" and "--worker=all" in scp
    assert ssh[3] == "ssh" and "--worker=all" in ssh and "jax[tpu]==0.10.2" in ssh[ssh.index("--command") + 1]
    archive = (log / "archive").read_text().splitlines()
    assert "./scripts/launch/tpu-slice.sh" in archive and "./stjax/cli.py" in archive
    assert not any(path.startswith(("./.venv/", "./runs/", "./data/")) for path in archive)


def test_tpu_refuses_addresses_and_missing_arguments(fake_gcloud):
    env, log, _ = fake_gcloud
    assert _tpu(["my-tpu", "zone"], env).returncode == 2
    done = _tpu(["my-tpu", "zone", "train", "--coordinator", "h:1"], env)
    assert done.returncode == 2 and "TPU detection" in done.stderr
    assert not list(log.glob("call-*"))
