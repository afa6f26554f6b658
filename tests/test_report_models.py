"""Every registered model's tiny run reports (slow: one tiny training per model; `make test-slow`)."""

from pathlib import Path

import pytest

from stjax import models
from stjax.config import load_config
from stjax.report import run_report
from stjax.train import train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]


def experiment(name: str) -> Path:
    found = sorted(path for path in ROOT.glob(f"experiments/{name}_*.py") if path.stem.rpartition("_")[0] == name)
    assert found, f"model {name} has no experiment config"
    synthetic = [path for path in found if path.stem.endswith("_synthetic")]
    return (synthetic or found)[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_every_model_run_reports(name, tmp_path):
    config = load_config(f"{experiment(name)}:tiny", ["--config.train.num_epochs=2"])
    train_and_evaluate(config, tmp_path / "run", log=lambda m: None, progress=False)
    path, sections = run_report(tmp_path / "run", tmp_path / "report.html")
    keys = {section.key: section for section in sections}
    assert path.stat().st_size > 20_000
    assert keys["metrics"].tables and not keys["metrics"].missing
    assert len(keys["breakdowns"].figures) >= 3, keys["breakdowns"].missing
    has_attention = models.get(name).explain is not None
    assert bool(keys["attention"].figures) == has_attention, keys["attention"].missing
    assert keys["training"].figures, keys["training"].missing
    if not models.get(name).trainable:
        assert "closed form" in " ".join(keys["training"].notes)
