#!/usr/bin/env bash
# Trains the ML-1M experiments on a GPU machine and copies results.json files to $OUT.
# Expects wheels for packages missing there in .whl/ and ML-1M as .devdata/ml1m.parquet
# (made by: stjax data validate data/ml-1m --repair .devdata/ml1m.parquet).
#   bash scripts/device_ml1m.sh sasrec bert4rec ...
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-/tmp/out}
python3 -c "import jax, flax, optax, orbax.checkpoint; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for model in "$@"; do
  limit=${LIMIT:-240}
  echo "=== $model (limit ${limit}s)"
  timeout "$limit" python3 -m stjax.cli train --config "experiments/${model}_ml1m.py" --workdir "/tmp/run_$model" \
    --config.data.source=.devdata/ml1m.parquet --config.data.format=parquet --no-progress ${EXTRA:-} 2>&1 | tail -15
  cp "/tmp/run_$model/results.json" "$OUT/${model}_ml1m_results.json" 2>/dev/null
  cp "/tmp/run_$model/metrics.jsonl" "$OUT/${model}_ml1m_metrics.jsonl" 2>/dev/null
done
