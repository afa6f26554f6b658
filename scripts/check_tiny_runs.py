"""Every model's tiny run, on synthetic data and on ml-100k, with every number it produces.

    python scripts/check_tiny_runs.py --out tiny_runs.json [--data-dir data] [--models sasrec lstm]
    python scripts/check_tiny_runs.py --out after.json --compare before.json

Trains each registered model with the `tiny` variant (on `synthetic`, and on ml-100k with one
epoch when `data/ml-100k` is there), then re-evaluates the best checkpoint, recommends top-5 for
the run's first users and exports user vectors, and writes every metric, every recommended id and
a digest of the vectors as JSON. A refactor that claims unchanged behaviour shows it with
`--compare`: every number equal to the last digit (exit 1 and the differences otherwise).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def run_one(model: str, source: str, data_dir: str, root: Path) -> dict:
    from stjax.config import base_config, tiny
    from stjax.models.base import REGISTRY  # noqa: F401  (registers the models)
    from stjax.train.loop import train_and_evaluate

    config = tiny(base_config(model, source="synthetic"))
    if source != "synthetic":
        config.data.source = source
        config.data.data_dir = data_dir
        config.train.num_epochs = 1
        config.train.eval_every_epochs = 1
    workdir = root / f"{model}-{source}"
    results = train_and_evaluate(config, workdir, log=lambda *_: None, progress=False)
    out = {"valid": results["valid"], "test": results["test"]}
    out.update(serve(workdir))
    return out


def serve(workdir: Path) -> dict:
    """What evaluate, recommend and export give on the run folder, through the command line."""
    from click.testing import CliRunner

    from stjax.cli import main

    runner = CliRunner()
    found = {}
    result = runner.invoke(main, ["evaluate", "--workdir", str(workdir)])
    found["evaluate_exit"] = result.exit_code
    results = json.loads((workdir / "results.json").read_text())
    found["evaluated"] = {"valid": results["valid"], "test": results["test"]}
    top = workdir / "top.jsonl"
    result = runner.invoke(main, ["recommend", "--workdir", str(workdir), "--users", "all", "--k", "5",
                                  "--out", str(top), "--no-progress"])
    found["recommend_exit"] = result.exit_code
    if top.exists():
        found["recommend"] = [json.loads(line) for line in top.read_text().splitlines()[:20]]
    vectors = workdir / "users.parquet"
    result = runner.invoke(main, ["export", "--workdir", str(workdir), "--what", "users", "--out", str(vectors)])
    found["export_exit"] = result.exit_code
    if vectors.exists():
        import pyarrow.parquet as pq

        table = pq.read_table(vectors)
        matrix = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
        found["export_sha256"] = hashlib.sha256(matrix.tobytes()).hexdigest()
    return found


def differences(before, after, path="") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after)):
            if key not in before or key not in after:
                found.append(f"{path}{key}: only in {'after' if key not in before else 'before'}")
            else:
                found += differences(before[key], after[key], f"{path}{key}.")
        return found
    return [] if before == after else [f"{path[:-1]}: {before!r} -> {after!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--compare")
    args = parser.parse_args()
    from stjax.models.base import REGISTRY

    models = args.models or sorted(REGISTRY)
    sources = ["synthetic"] + (["ml-100k"] if (Path(args.data_dir) / "ml-100k").exists() else [])
    found = {}
    with tempfile.TemporaryDirectory() as root:
        for model in models:
            for source in sources:
                print(f"{model} on {source}", file=sys.stderr, flush=True)
                found[f"{model}/{source}"] = run_one(model, source, args.data_dir, Path(root))
    Path(args.out).write_text(json.dumps(found, indent=1, sort_keys=True))
    if args.compare:
        diff = differences(json.loads(Path(args.compare).read_text()), found)
        print("\n".join(diff) if diff else f"identical: {len(found)} runs, every number equal")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
