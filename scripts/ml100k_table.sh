#!/usr/bin/env bash
# Trains every model's ml-100k experiment and prints the accuracy table (CPU, ~30 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
for model in popularity sasrec gru4rec lstm bert4rec tisasrec; do
  stjax train --config "experiments/${model}_ml100k.py" --workdir "runs/${model}_ml100k" --no-progress > "runs/${model}_ml100k.log" 2>&1 || echo "$model failed"
done
python - <<'PY'
import json
from pathlib import Path
print("| model | test NDCG@10 | test HR@10 | test MRR@10 | best step | train s | targets/s |")
print("|---|---|---|---|---|---|---|")
for model in ("popularity", "sasrec", "gru4rec", "lstm", "bert4rec", "tisasrec"):
    path = Path(f"runs/{model}_ml100k/results.json")
    if not path.exists():
        print(f"| {model} | (no result) |||||")
        continue
    r = json.loads(path.read_text()); t = r["test"]; timing = r["timings"]
    print(f"| {model} | {t['ndcg@10']:.4f} | {t['hr@10']:.4f} | {t['mrr@10']:.4f} | {r['best_step']} | "
          f"{timing['train_s']:.0f} | {timing['train_targets_per_s']:,.0f} |")
PY
