#!/usr/bin/env bash
# The ML-1M rows of the graph models beside SASRec and TiSASRec at one CPU-sized protocol: each
# sequence model's experiments/<model>_ml1m.py with length 50, each user's last window per epoch
# (window=last, the TiSASRec authors' ML-1M setting), batch 128, up to 200 epochs, validation
# every 10, early stopping after 5 validations without improvement; LightGCN (not a sequence
# model: BPR over training pairs) at its experiments/lightgcn_ml1m.py, plain and social
# (co-interaction within an hour), with batch 65536 and Adam 1e-2 instead of RecBole's 2048 and
# 1e-3 (at 2048 an epoch is 483 propagations over the whole graph: ~18 h for 200 epochs here).
# The best validation checkpoint on test (leave-one-out by time, full ranking). Long: hours on
# 2 CPU cores. A stopped row resumes from its workdir's last checkpoint when the script runs
# again; finished rows are skipped.
#   stjax data fetch ml-1m
#   bash scripts/ml1m_graph_table.sh                   # every row, then the table
#   ROWS="tgat lstm_gat" bash scripts/ml1m_graph_table.sh
#   ROWS=tgat-no-graph bash scripts/ml1m_graph_table.sh   # tgat without its graph (an ablation)
set -uo pipefail
cd "$(dirname "$0")/.."
STJAX=${STJAX:-.venv/bin/stjax}
ROWS=${ROWS:-"sasrec tisasrec tgat lstm_gat fusion lightgcn lightgcn-social"}
SEQUENCE="--config.data.max_length=50 --config.data.window=last --config.train.num_epochs=200
  --config.train.eval_every_epochs=10"
LIGHTGCN="--config.train.batch_size=65536 --config.train.learning_rate=1e-2"
mkdir -p runs
for name in $ROWS; do
  workdir="runs/ml1m50_${name}"
  case "$name" in
    lightgcn) config=lightgcn; args=$LIGHTGCN ;;
    lightgcn-social) config=lightgcn; args="$LIGHTGCN --config.model.relation=co_interaction" ;;
    tgat-no-graph) config=tgat; args="$SEQUENCE --config.model.num_neighbours=0" ;;
    *) config=$name; args=$SEQUENCE ;;
  esac
  if [ -f "$workdir/results.json" ]; then echo "$name: done"; continue; fi
  echo "$name: training ($(date -u +%H:%M))"
  # shellcheck disable=SC2086  # args are words
  $STJAX train --config "experiments/${config}_ml1m.py" --workdir "$workdir" --no-progress $args \
    >> "$workdir.log" 2>&1 || echo "$name failed ($workdir.log)"
done
.venv/bin/python - <<'PY'
import json
from pathlib import Path
print("| model | test NDCG@10 | HR@10 | MRR@10 | best validation NDCG@10 | best step | stopped early | train s | targets/s |")
print("|---|---|---|---|---|---|---|---|---|")
for path in sorted(Path("runs").glob("ml1m50_*/results.json"), key=lambda p: p.stat().st_mtime):
    r = json.loads(path.read_text())
    t = r["test"]
    timings = r.get("timings", {})
    print(f"| {path.parent.name[7:]} | {t['ndcg@10']:.4f} | {t['hr@10']:.4f} | {t['mrr@10']:.4f} | "
          f"{r['valid']['ndcg@10']:.4f} | {r['best_step']} | {r['stopped_early']} | {timings.get('train_s', 0):.0f} | "
          f"{timings.get('train_targets_per_s', 0):,.0f} |")
PY
