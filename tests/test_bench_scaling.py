"""scripts/bench_scaling.py end to end at a tiny size: each setting trains the same model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_scaling_runs_and_every_setting_trains_the_same_model(tmp_path):
    out = tmp_path / "scaling.json"
    done = subprocess.run([sys.executable, "scripts/bench_scaling.py", "--config", "experiments/sasrec_synthetic.py:tiny",
                           "--steps", "6", "--batch-size", "16", "--devices", "2", "--processes", "2",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(row["devices"], row["processes"]) for row in rows] == [(2, 1), (2, 2)]
    for row in rows:
        assert row["steps"] == 6 and row["train_step_compiles"] == 1
        assert row["steps_per_s"] > 0 and row["targets_per_s"] > 0
    # 2 host devices in one process and 2 processes of one device: the same global batches and step.
    assert abs(rows[0]["final_loss"] - rows[1]["final_loss"]) < 1e-5
    assert report["machine"]["cores"] >= 1 and "load_average" in report["machine"]
