#!/usr/bin/env bash
# The held-out-users rows on ML-1M (DATA=ml1m, the default) or ml-100k (DATA=ml100k) (EASE, Mult-DAE, Mult-VAE; RecVAE when its experiment exists) over
# 3 seeds: seed S draws the 600 + 600 held-out users and the fold-in split (data.seed) and
# initialises and shuffles (seed). Each model at its experiment's settings (EASE: l2 = 500, chosen
# on seed 0's validation by scripts/tune_ease.py; the autoencoders: the paper's training with early
# stopping on validation NDCG@100). Finished rows are skipped, a stopped one resumes; then the
# table of means and standard deviations.
#   stjax data fetch ml-1m
#   bash scripts/generative_seeds.sh
#   MODELS="multvae" SEEDS="0 1" bash scripts/generative_seeds.sh
#   DATA=ml100k bash scripts/generative_seeds.sh       # the ml-100k rows (50 + 50 held-out users)
set -uo pipefail
cd "$(dirname "$0")/.."
STJAX=${STJAX:-.venv/bin/stjax}
DATA=${DATA:-ml1m}
MODELS=${MODELS:-"ease multdae multvae recvae"}
SEEDS=${SEEDS:-"0 1 2"}
mkdir -p runs
for seed in $SEEDS; do
  for model in $MODELS; do
    [ -f "experiments/${model}_${DATA}.py" ] || continue
    workdir="runs/gen_${DATA}_${model}_s${seed}"
    if [ -f "$workdir/results.json" ]; then echo "$model seed $seed: done"; continue; fi
    echo "$model seed $seed: training ($(date -u +%H:%M))"
    $STJAX train --config "experiments/${model}_${DATA}.py" --workdir "$workdir" --no-progress \
      --config.data.seed="$seed" --config.seed="$seed" >> "$workdir.log" 2>&1 || echo "$model seed $seed failed ($workdir.log)"
  done
done
DATA=$DATA .venv/bin/python - <<'PY'
import json
import os
from pathlib import Path

import numpy as np

rows = {}
prefix = f"gen_{os.environ['DATA']}_"
for path in sorted(Path("runs").glob(f"{prefix}*_s*/results.json")):
    model = path.parent.name[len(prefix):].rsplit("_s", 1)[0]
    rows.setdefault(model, []).append(json.loads(path.read_text()))
print("| model | seeds | NDCG@100 | Recall@20 | Recall@50 | valid NDCG@100 | steps (best step) per seed |")
print("|---|---:|---|---|---|---|---|")
for model, results in rows.items():
    def cell(part, name):
        values = np.array([r[part][name] for r in results])
        return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.4f}"
    steps = ", ".join(f"{r['steps']} ({r['best_step']})" for r in results)
    print(f"| {model} | {len(results)} | {cell('test', 'ndcg@100')} | {cell('test', 'capped_recall@20')} | "
          f"{cell('test', 'capped_recall@50')} | {cell('valid', 'ndcg@100')} | {steps} |")
PY
