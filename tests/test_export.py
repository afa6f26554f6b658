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


def _train(name, workdir, source="ml100k"):
    config = load_config(str(ROOT / "experiments" / f"{name}_{source}.py") + ":tiny", ["--config.train.num_epochs=2"])
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


def test_fusion_vectors_reproduce_its_recommendations(tmp_path):
    """The exported fused vectors are the ones fusion scores with: each vector against the item
    table plus the propagated LightGCN items gives the scores `recommend` ranks by."""
    from stjax.serving.recommend import histories_from_run, recommend_batches

    _train("fusion", tmp_path / "run", source="synthetic")
    out = tmp_path / "deep" / "er" / "users.parquet"  # missing folders are created
    result = CliRunner().invoke(main, ["export", "--workdir", str(tmp_path / "run"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["users.parquet"]  # no partial file left
    table = pq.read_table(out)
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    model, _ = load_model(tmp_path / "run")
    variables = {"params": model.state.params}
    _, graph_items = model.spec.prepare_scoring(model.module, variables, context=model.context)
    scores = np.asarray(model.module.apply(variables, vectors, graph_items, method="scores"))
    vocab = json.loads((tmp_path / "run" / "vocab.json").read_text())
    rows = {user: row for row, user in enumerate(table.column("user").to_pylist())}
    checked = 0
    for batch in recommend_batches(model, histories_from_run(tmp_path / "run", vocab), k=5):
        for user, items, top, count in zip(batch.users, batch.items, batch.scores, batch.counts):
            # the first `count` are real (the tiny catalogue can run out of unseen items)
            np.testing.assert_allclose(scores[rows[str(user)], items[:count]], top[:count], rtol=1e-4, atol=1e-4)
            checked += int(count > 0)
    assert checked == len(rows) == len(vocab["users"]) - 1


def test_export_output_errors_are_one_line_and_leave_nothing(tmp_path):
    _train("lightgcn", tmp_path / "run")
    for out, message in ((tmp_path / "users.csv", f"--out {tmp_path / 'users.csv'}: expected a .parquet file name"),
                         (tmp_path / "run.parquet", f"--out {tmp_path / 'run.parquet'}: is a folder; expected a "
                                                    f".parquet file name")):
        if out.suffix == ".parquet":
            out.mkdir()
        result = CliRunner().invoke(main, ["export", "--workdir", str(tmp_path / "run"), "--out", str(out)])
        assert result.exit_code == 2
        assert result.output.strip() == f"error: {message}"
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = blocker / "users.parquet"  # its folder is a file
    result = CliRunner().invoke(main, ["export", "--workdir", str(tmp_path / "run"), "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"error: --out {out}: cannot write it (")
