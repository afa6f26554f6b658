#!/usr/bin/env bash
# One stjax run over every host of a Cloud TPU VM slice (e.g. v4-16: 2 hosts x 4 chips), one process
# per host, started on all hosts at once by `gcloud compute tpus tpu-vm ssh --worker=all`.
#
#   bash scripts/launch/tpu-slice.sh NAME ZONE setup      # once: the code and a venv on every host
#   bash scripts/launch/tpu-slice.sh NAME ZONE train --config experiments/sasrec_ml1m.py \
#       --workdir /mnt/runs/sasrec_ml1m --config.train.model_parallel=4
#   bash scripts/launch/tpu-slice.sh NAME ZONE evaluate --workdir /mnt/runs/sasrec_ml1m
#
# runs, on every host: cd $REMOTE_DIR && source .venv/bin/activate && stjax ARGS... --distributed
# (the arguments quoted for the remote shell). Environment: PROJECT (gcloud --project), REMOTE_DIR
# (default stjax, under the login's home). `setup` copies this checkout without .venv, runs/ and
# data/ (the hosts fetch or build their data like any machine) and installs it with jax[tpu]
# (libtpu, and `requests`, with which JAX's detection reads the metadata server).
#
# --workdir must be on storage every host mounts at the same path (a Filestore share over NFS, or a
# bucket through gcsfuse; mount it on all hosts, e.g. with --worker=all --command "sudo mount ..."):
# process 0 writes the run folder and every process writes its part of each Orbax checkpoint.
#
# Detection: `--distributed` with no address; on a TPU VM, JAX's GceTpuCluster
# (jax/_src/clusters/cloud_tpu_cluster.py) reads the VM's metadata server: agent-worker-number is
# the process id, worker-network-endpoints the hosts (the first one is the coordinator, port 8482),
# their count the process count (times MEGASCALE_NUM_SLICES for multislice). All hosts must run the
# command together: a host that is missing leaves the others waiting in initialize (300 s), then
# each ends with one line.
#
# Mesh: one process per host with all its chips; jax.devices() lists them by device id and
# make_mesh lays that list row by row into (data, model). model_parallel = chips per host (4 on
# v4/v5p hosts) keeps each row of the item table's shards to one host's chips (to be checked on
# the slice: a TPU's device ids follow its physical coordinates, not necessarily its hosts), but on
# a TPU slice the inter-chip links (ICI) join every chip of the slice, across hosts too, so a model
# group that spans hosts still never touches the data-centre network. 'data' spans the rest.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: bash scripts/launch/tpu-slice.sh TPU_NAME ZONE setup | STJAX_COMMAND [ARGS...]" >&2
    exit 2
fi
name=$1 zone=$2
shift 2
remote=${REMOTE_DIR:-stjax}
gcloud_tpu=(gcloud compute tpus tpu-vm)
where=(--zone "$zone" ${PROJECT:+--project "$PROJECT"})

if [[ $1 == setup ]]; then
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    archive=$scratch/stjax.tar.gz
    tar -C "$root" --exclude=./.venv --exclude=./runs --exclude=./data --exclude=.git --exclude=__pycache__ -czf "$archive" .
    "${gcloud_tpu[@]}" scp "$archive" "$name:stjax.tar.gz" "${where[@]}" --worker=all
    "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command \
        "mkdir -p $(printf '%q' "$remote") && tar -C $(printf '%q' "$remote") -xzf stjax.tar.gz && cd $(printf '%q' "$remote") \
         && python3 -m venv .venv && .venv/bin/pip install -q -e . 'jax[tpu]==0.10.2'"
    exit
fi

for arg in "$@"; do
    case $arg in
        --distributed | --coordinator* | --num-processes* | --process-id*)
            echo "tpu-slice.sh: $arg: the hosts join through JAX's TPU detection; give none of these" >&2
            exit 2 ;;
    esac
done
command="cd $(printf '%q' "$remote") && source .venv/bin/activate && exec stjax$(printf ' %q' "$@") --distributed"
exec "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command "$command"
