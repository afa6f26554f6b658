#!/usr/bin/env bash
# N processes of one stjax command on this machine, joined on 127.0.0.1 (jax.distributed).
#
#   bash scripts/launch/local.sh N train --config experiments/X.py --workdir RUN [--config.KEY=VALUE ...]
#   bash scripts/launch/local.sh 2 train --config experiments/sasrec_synthetic.py:tiny --workdir /tmp/x
#   JAX_PLATFORMS=cpu bash scripts/launch/local.sh 2 evaluate --workdir /tmp/x
#
# Process i runs `stjax ARGS... --distributed --coordinator 127.0.0.1:PORT --num-processes N
# --process-id i` (PORT: a free one, or $PORT). Its stdout and stderr lines are prefixed "[i] " and
# kept on stdout and stderr. The script waits for all of them and exits with the first non-zero
# status it sees; when one process fails it stops the others (SIGTERM to each process group, SIGKILL
# after $GRACE seconds, default 10), and Ctrl-C or SIGTERM to the script does the same, so nothing
# is left behind. `local.sh 1 ARGS...` is a plain `stjax ARGS...` (one process, no coordinator).
#
# Environment: STJAX, the command (default `stjax` from PATH, else this checkout's .venv/bin/stjax;
# e.g. STJAX="python -m stjax.cli"); GPUS_PER_PROCESS=k gives process i the GPUs i*k .. i*k+k-1 as
# CUDA_VISIBLE_DEVICES; everything else (JAX_PLATFORMS, XLA_FLAGS, ...) is passed on unchanged.
#
# One process or several on one machine. One process driving every local GPU (`local.sh 1`, i.e.
# plain `stjax train`) is the usual choice: no coordinator, one copy of the data in host memory, and
# the mesh ('data', 'model') simply spans the local devices. Several processes on one machine are for
#   * testing the multi-process path before a cluster (on CPU: JAX_PLATFORMS=cpu, one device per
#     process, or XLA_FLAGS=--xla_force_host_platform_device_count=K for K each);
#   * one process per GPU (GPUS_PER_PROCESS=1) when the host side is the bottleneck: each process
#     builds only its share of every batch, so N processes use N cores for it;
#   * reproducing what a multi-host run does (process 0 writes, the others stay silent).
#
# Mesh: jax.devices() lists process 0's devices first, then process 1's, ... (each process's devices
# are adjacent; tests/test_launch.py checks it on CPU), and make_mesh reshapes that list row by row
# into (data, model) with train.model_parallel columns. On one machine every pair of GPUs shares the
# same links (NVLink/PCIe) whichever process drives them, so any model_parallel that divides the
# total device count is fine; model_parallel <= GPUS_PER_PROCESS keeps the item table's all-gathers
# inside one process.
set -uo pipefail

usage() {
    echo "usage: bash scripts/launch/local.sh N STJAX_COMMAND [ARGS...]   (e.g. 2 train --config experiments/X.py --workdir RUN)" >&2
    exit 2
}

[[ $# -ge 2 && $1 =~ ^[1-9][0-9]*$ ]] || usage
processes=$1
shift
for arg in "$@"; do
    case $arg in
        --distributed | --coordinator* | --num-processes* | --process-id*)
            echo "local.sh: $arg: the script sets --distributed, --coordinator, --num-processes and --process-id itself" >&2
            exit 2 ;;
    esac
done

if [[ -n ${STJAX:-} ]]; then
    read -r -a stjax <<<"$STJAX"
elif command -v stjax >/dev/null; then
    stjax=(stjax)
else
    stjax=("$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.venv/bin/stjax")
fi

if ((processes == 1)); then
    exec "${stjax[@]}" "$@"
fi

if [[ -z ${PORT:-} ]]; then
    # A port free now; the coordinator binds it a second later (a race only with another such script).
    PORT=$("${PYTHON:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || {
        echo "local.sh: no python3 to pick a free port; set PORT" >&2
        exit 2
    }
fi
grace=${GRACE:-10}
gpus=${GPUS_PER_PROCESS:-}

prefix() {  # copies stdin to stdout line by line, each line prefixed "[i] "
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        printf '[%s] %s\n' "$1" "$line"
    done
}

pids=()  # the processes' subshells, each the leader of its process group; "" once reaped
live() {  # the subshells not yet reaped
    local pid
    for pid in "${pids[@]}"; do
        [[ -n $pid ]] && echo "$pid"
    done
}

groups=()  # every process group started (a group outlives its leader when a member ignores SIGTERM)
alive_groups() {
    local group
    for group in "${groups[@]}"; do
        kill -0 -- "-$group" 2>/dev/null && echo "$group"
    done
}

stopping=0
stop_all() {  # SIGTERM to every process group, SIGKILL to those still there after $grace s
    local group waited=0
    stopping=1
    for group in $(alive_groups); do
        kill -TERM -- "-$group" 2>/dev/null
    done
    while [[ -n $(alive_groups) ]] && ((waited < grace * 10)); do
        reap
        sleep 0.1
        ((waited++))
    done
    for group in $(alive_groups); do
        kill -KILL -- "-$group" 2>/dev/null
    done
    while [[ -n $(live) ]]; do
        reap
        sleep 0.05
    done
}

status=0
reap() {  # collects the status of every process that has ended; the first non-zero one is kept
    local i code
    for i in "${!pids[@]}"; do
        [[ -n ${pids[i]} ]] || continue
        kill -0 "${pids[i]}" 2>/dev/null && continue
        wait "${pids[i]}"
        code=$?
        pids[i]=""
        if ((code != 0 && status == 0 && !stopping)); then
            status=$code
            echo "local.sh: process $i exited with status $code; stopping the others" >&2
        fi
    done
}

on_signal() {
    trap '' INT TERM  # a second Ctrl-C waits for the same bounded stop
    echo "local.sh: $1: stopping the processes" >&2
    stop_all
    exit $((128 + $2))
}
trap 'on_signal SIGINT 2' INT
trap 'on_signal SIGTERM 15' TERM
trap 'grace=0 stop_all' EXIT  # whatever ends the script, no process outlives it

# Job control: each process gets its own process group (led by the subshell below), so that stopping
# it also stops whatever it started. Inside, its stderr and stdout each pass through `prefix` (fd 3
# carries stdout past the stderr pipe); the subshell's status is the command's (pipefail).
set -m
for ((i = 0; i < processes; i++)); do
    (
        if [[ -n $gpus ]]; then
            export CUDA_VISIBLE_DEVICES
            CUDA_VISIBLE_DEVICES=$(seq -s, $((i * gpus)) $((i * gpus + gpus - 1)))
        fi
        {
            "${stjax[@]}" "$@" --distributed --coordinator "127.0.0.1:$PORT" --num-processes "$processes" \
                --process-id "$i" 2>&1 1>&3 3>&- </dev/null | prefix "$i" >&2 3>&-
        } 3>&1 | prefix "$i"
    ) &
    pids+=("$!")
    groups+=("$!")
done
set +m

while [[ -n $(live) ]]; do
    reap
    if ((status != 0)); then
        stop_all
        break
    fi
    sleep 0.2
done
trap - EXIT
grace=0 stop_all  # anything a process left running in its group
exit "$status"
