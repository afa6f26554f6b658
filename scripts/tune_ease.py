"""EASE's L2 weight chosen on validation, then the test metrics of the chosen run (read once).

    python scripts/tune_ease.py --config experiments/ease_ml1m.py --workdir runs/ease_ml1m_grid \\
        [--l2 50 100 200 500 1000 2000 5000] [--out runs/ease_ml1m_grid/tuning.json]

Each value is one run folder (`<workdir>/l2=<value>`); a finished run is not trained again, so the
script resumes. Selection is on the validation metric of the config (`eval.metric`); the JSON holds
every trial's validation numbers and the chosen run's test numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    from stjax.config import load_config
    from stjax.train import train_and_evaluate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--l2", type=float, nargs="*", default=[50, 100, 200, 500, 1000, 2000, 5000])
    parser.add_argument("--out")
    args = parser.parse_args()
    root = Path(args.workdir)
    trials = []
    for l2 in args.l2:
        config = load_config(args.config, [f"--config.model.l2={l2}"])
        folder = root / f"l2={l2:g}"
        done = folder / "results.json"
        results = json.loads(done.read_text()) if done.exists() else train_and_evaluate(
            config, folder, log=lambda m: None, progress=False)
        trials.append({"l2": l2, "valid": results["valid"], "test": results["test"], "folder": str(folder)})
        print(f"l2={l2:g}: valid {config.eval.metric} {results['valid'][config.eval.metric]:.4f}", flush=True)
    metric = config.eval.metric
    best = max(trials, key=lambda trial: trial["valid"][metric])
    summary = {"metric": metric, "chosen_l2": best["l2"], "test": best["test"],
               "trials": [{"l2": t["l2"], "valid": t["valid"]} for t in trials]}
    out = Path(args.out or root / "tuning.json")
    out.write_text(json.dumps(summary, indent=1))
    print(f"chosen l2={best['l2']:g}; test " + ", ".join(
        f"{name} {best['test'][name]:.4f}" for name in ("ndcg@100", "capped_recall@20", "capped_recall@50")
        if name in best["test"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
