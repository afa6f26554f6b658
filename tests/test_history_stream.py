"""History files are read as a stream (`HistoryFile`): chunks of users, a first pass that checks
the whole file before any output, and the same rows as the in-memory path."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stjax.cli import main
from stjax.config import load_config
from stjax.data.errors import DataError
from stjax.data.histories import HistoryFile, histories_from_dict, read_histories
from stjax.serving.recommend import recommend, recommend_batches
from stjax.train import train_and_evaluate
from stjax.train.build import load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("stream")
    config = load_config(str(ROOT / "experiments" / "sasrec_synthetic.py") + ":tiny", ["--config.train.num_epochs=1"])
    train_and_evaluate(config, workdir, log=lambda m: None, progress=False)
    model, _ = load_model(workdir)
    return workdir, model, json.loads((workdir / "vocab.json").read_text())


def _file(tmp_path, vocab, users: int, kind: str) -> Path:
    rng = np.random.default_rng(4)
    items = vocab["items"][1:]
    if kind == "jsonl":
        path = tmp_path / "h.jsonl"
        lines = []
        for user in range(users):
            chosen = [items[i] for i in rng.integers(0, len(items), rng.integers(1, 9))] + ["never-seen"]
            lines.append(json.dumps({"user": f"n{user}", "items": chosen,
                                     "timestamps": sorted(rng.integers(0, 10**6, len(chosen)).tolist())}))
        path.write_text("\n".join(lines) + "\n")
    else:
        path = tmp_path / "h.csv"
        rows = [f"n{rng.integers(0, users)},{items[rng.integers(0, len(items))]},{rng.integers(0, 10**6)}"
                for _ in range(users * 5)]
        path.write_text("user,item,timestamp\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_chunks_give_the_rows_of_the_in_memory_path(run, tmp_path, kind):
    workdir, model, vocab = run
    path = _file(tmp_path, vocab, 23, kind)
    whole = histories_from_dict(read_histories(str(path)), vocab)
    stream = HistoryFile(str(path), vocab, users_per_chunk=5)
    chunks = list(stream.chunks())
    assert len(stream) == len(whole) and [len(c) for c in chunks][:-1] == [5] * (len(chunks) - 1)
    assert stream.longest == whole.longest and stream.unknown_items == whole.unknown_items
    np.testing.assert_array_equal(np.concatenate([c.items for c in chunks]), whole.items)
    expected = [row for batch in recommend_batches(model, whole, 4, 8) for row in batch.rows(vocab["items"])]
    out = tmp_path / "top.jsonl"
    summary = recommend(model, stream, vocab["items"], 4, str(out), batch_size=8)
    assert [json.loads(line) for line in out.read_text().splitlines()] == expected
    assert summary["users"] == len(whole) and summary["unknown_items"] == whole.unknown_items


def test_an_error_late_in_the_file_comes_before_any_output(run, tmp_path):
    workdir, _, vocab = run
    path = _file(tmp_path, vocab, 30, "jsonl")
    path.write_text(path.read_text() + '{"user": "late", "items": ["x"], "timestamps": ["soon"]}\n')
    out = tmp_path / "top.jsonl"
    result = CliRunner().invoke(main, ["recommend", "--workdir", str(workdir), "--history", str(path),
                                       "--out", str(out)])
    assert result.exit_code == 2 and re.search(r"h\.jsonl:31: field 'timestamps'", result.output), result.output
    assert not out.exists() or out.read_text() == ""


def test_a_users_lines_apart_are_a_located_error(tmp_path):
    path = tmp_path / "apart.jsonl"
    path.write_text('{"user": "a", "items": ["x"]}\n{"user": "b", "items": ["y"]}\n{"user": "a", "items": ["z"]}\n')
    with pytest.raises(DataError, match=r"apart.jsonl:3: field 'user': user 'a' appears again \(first on line 1\)"):
        read_histories(str(path))
    together = tmp_path / "together.jsonl"
    together.write_text('{"user": "a", "items": ["x"], "timestamps": [5]}\n'
                        '{"user": "a", "items": ["z"], "timestamps": [1]}\n')
    assert read_histories(str(together)) == {"a": [("z", 1), ("x", 5)]}


def test_a_ragged_csv_row_is_located(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("user,item,timestamp\na,x,1\nb,y,2,extra\n")
    with pytest.raises(DataError, match=r"ragged.csv:3: unreadable CSV"):
        read_histories(str(path))
