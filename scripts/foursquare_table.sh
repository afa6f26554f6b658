#!/usr/bin/env bash
# Trains the Foursquare NYC rows (baselines, graph models and their ablations) one after the other
# and prints the README table. Long: about 2-3 hours on 2 CPU cores. Data first:
#   stjax data fetch foursquare-nyc --mirror ../shared/data
# ROWS="name:config:overrides ..." runs a subset (overrides: KEY=VALUE joined by +).
set -uo pipefail
cd "$(dirname "$0")/.."
STJAX=${STJAX:-.venv/bin/stjax}
DEFAULT_ROWS="popularity:popularity: sasrec:sasrec: tisasrec:tisasrec: gru4rec:gru4rec: lightgcn:lightgcn:
lstm_gat:lstm_gat: lstm_gat-no-relation:lstm_gat:model.relation=none lstm_gat-no-geo:lstm_gat:model.use_geo=false
tgat:tgat: fusion:fusion: tgat-no-graph:tgat:model.num_neighbours=0 fusion-no-gnn:fusion:model.parts=ae,rnn
lstm_gat-neither:lstm_gat:model.use_geo=false+model.relation=none fusion-no-ae:fusion:model.parts=rnn,gnn
tgat-item-residual:tgat:model.item_residual=true tgat-no-two-hop:tgat:model.two_hop=false
lightgcn-social:lightgcn:model.relation=co_interaction"
ROWS=${ROWS:-$DEFAULT_ROWS}
mkdir -p runs
for row in $ROWS; do
  IFS=: read -r name config overrides <<< "$row"
  args=()
  IFS=+ read -ra pairs <<< "$overrides"
  for pair in "${pairs[@]}"; do [ -n "$pair" ] && args+=("--config.$pair"); done
  if [ -f "runs/fsq_${name}/results.json" ]; then echo "$name: done"; continue; fi
  echo "$name: training ($(date -u +%H:%M))"
  $STJAX train --config "experiments/${config}_foursquare.py" --workdir "runs/fsq_${name}" --no-progress "${args[@]}" \
    > "runs/fsq_${name}.log" 2>&1 || echo "$name failed (runs/fsq_${name}.log)"
done
# The same checkpoints ranked against every venue, visited ones included (the next-POI protocol).
for path in runs/fsq_*/results.json; do
  folder=$(dirname "$path")
  [ -f "$folder/all_items.json" ] || $STJAX evaluate --workdir "$folder" --all-items 2>/dev/null | tail -1 > "$folder/all_items.json"
done
.venv/bin/python - <<'PY'
import json
from pathlib import Path
print("| model | Acc@1 | Acc@5 | Acc@10 | Acc@20 | MRR@20 | NDCG@10 | all venues: Acc@1 | Acc@5 | Acc@10 | Acc@20 | "
      "MRR@20 | NDCG@10 | best step | train s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(Path("runs").glob("fsq_*/results.json"), key=lambda p: p.stat().st_mtime):
    r = json.loads(path.read_text())
    cells = []
    for t in (r["test"], json.loads((path.parent / "all_items.json").read_text() or "{}").get("test")):
        cells += [f"{t[k]:.4f}" for k in ("hr@1", "hr@5", "hr@10", "hr@20", "mrr@20", "ndcg@10")] if t else ["-"] * 6
    print(f"| {path.parent.name[4:]} | {' | '.join(cells)} | {r['best_step']} | {r['timings']['train_s']:.0f} |")
PY
