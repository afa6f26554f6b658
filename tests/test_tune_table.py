"""scripts/tune_table.py at a tiny size: the grid, the choice on validation, the seeds, resume."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/tune_table.py", "--data", "synthetic", "--models", "sasrec",
                           "--variant", "tiny", "--epochs", "2", "--seeds", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_tune_table_chooses_on_validation_runs_seeds_and_resumes(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = json.loads((tmp_path / "synthetic" / "table.json").read_text())
    row = table["rows"]["sasrec"]
    folder = tmp_path / "synthetic" / "sasrec"
    trials = {path.parent.name: json.loads(path.read_text()) for path in folder.glob("*/results.json")}
    grid = {name for name in trials if "-seed" not in name}
    assert grid == {"lr1e-3-dropout0.2", "lr1e-3-dropout0.5", "lr3e-3-dropout0.2", "lr3e-3-dropout0.5"}
    for name in grid:  # each trial ran with its own settings and the budget
        config = trials[name]["config"]
        assert f"lr{config['train']['learning_rate']:g}".replace("0.001", "1e-3").replace("0.003", "3e-3") in name
        assert f"dropout{config['model']['dropout']:g}" in name and config["train"]["num_epochs"] == 2
    chosen = max(grid, key=lambda name: trials[name]["valid"]["ndcg@10"])
    assert row["chosen"] == chosen and f"{chosen}-seed1" in trials
    assert trials[f"{chosen}-seed1"]["config"]["seed"] == 1
    seeds = [trials[chosen], trials[f"{chosen}-seed1"]]
    expected = [run["test"]["ndcg@10"] for run in seeds]
    assert abs(row["test"]["ndcg@10"]["mean"] - statistics.mean(expected)) < 1e-9
    assert abs(row["test"]["ndcg@10"]["std"] - statistics.stdev(expected)) < 1e-9
    assert (folder / chosen / "all_items.json").exists() and "ndcg@10" in row["test_all_items"]
    # Rerun: every trial is read back, nothing trains again.
    stamps = {path: path.stat().st_mtime for path in folder.glob("*/results.json")}
    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {path: path.stat().st_mtime for path in folder.glob("*/results.json")} == stamps
    assert "| sasrec |" in again.stdout
