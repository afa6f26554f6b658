"""`stjax export --what users`: every user's vector from the model's encode(), as Parquet."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner

from stjax.cli import main
from stjax.config import load_config
from stjax.train import train_and_evaluate
from stjax.train.loop import load_model

ROOT = Path(__file__).resolve().parents[1]


def _train(name, workdir):
    config = load_config(str(ROOT / "experiments" / f"{name}_ml100k.py") + ":tiny", ["--config.train.num_epochs=2"])
    train_and_evaluate(config, workdir, log=lambda m: None, progress=False)


def test_export_users_equals_the_models_own_vectors(tmp_path):
    _train("lightgcn", tmp_path / "run")
    out = tmp_path / "users.parquet"
    result = CliRunner().invoke(main, ["export", "--workdir", str(tmp_path / "run"), "--out", str(out),
                                       "--batch-size", "7"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    vocab = json.loads((tmp_path / "run" / "vocab.json").read_text())
    assert table.column("user").to_pylist() == vocab["users"][1:]
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    model, _ = load_model(tmp_path / "run")
    scoring = model.spec.prepare_scoring(model.module, {"params": model.state.params}, context=model.context)
    expected = np.asarray(scoring["users"])[1:len(vocab["users"])]
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)
    assert f"{len(vocab['users']) - 1} user vectors of {expected.shape[1]} dimensions written to" in result.output


def test_a_model_without_user_vectors_is_one_line(tmp_path):
    _train("popularity", tmp_path / "run")
    result = CliRunner().invoke(main, ["export", "--workdir", str(tmp_path / "run"), "--out", str(tmp_path / "u.parquet")])
    assert result.exit_code == 2
    assert result.output.strip() == "error: model 'popularity' defines no encode(): it has no user vectors to export"
