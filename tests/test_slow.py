"""Long checks, run by `make test-slow` (not in the default suite)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stjax.config import load_config
from stjax.train import train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sasrec_learns_the_planted_sequential_signal(tmp_path):
    """On the synthetic log (successor chains), SASRec must beat popularity by a wide margin."""
    sasrec = train_and_evaluate(load_config(str(ROOT / "experiments" / "sasrec_synthetic.py"), [
        "--config.train.num_epochs=40", "--config.train.eval_every_epochs=10"]), tmp_path / "sasrec",
        log=lambda m: None, progress=False)
    popularity = train_and_evaluate(load_config(str(ROOT / "experiments" / "popularity_ml100k.py"), [
        "--config.data.source=synthetic", "--config.train.num_epochs=20"]),
        tmp_path / "popularity", log=lambda m: None, progress=False)
    assert sasrec["test"]["ndcg@10"] > 1.5 * popularity["test"]["ndcg@10"], (sasrec["test"], popularity["test"])


@pytest.mark.slow
def test_property_tests_with_many_examples():
    env = dict(os.environ, STJAX_HYPOTHESIS_EXAMPLES="1000")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", str(ROOT / "tests" / "test_data_properties.py")],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:]
