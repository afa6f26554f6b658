"""Streaming recommend against a brute-force NumPy reference, its outputs, and its user errors.

One tiny SASRec run (module fixture); every streamed result is checked against scores of all users
at once, windows built by a per-user loop, history masked and sorted by NumPy."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from stjax.cli import main
from stjax.compiles import CompileCounter
from stjax.config import load_config
from stjax.data.errors import DataError
from stjax.models.base import ModelSpec
from stjax.serving.recommend import (
    Histories,
    RecommendError,
    _recent_distinct,
    histories_from_dict,
    histories_from_run,
    make_recommend_step,
    read_histories,
    recommend,
    recommend_batches,
)
from stjax.train import train_and_evaluate
from stjax.train.loop import load_model

ROOT = Path(__file__).resolve().parents[1]
K = 5


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("recommend")
    config = load_config(str(ROOT / "experiments" / "sasrec_synthetic.py") + ":tiny", ["--config.train.num_epochs=2"])
    train_and_evaluate(config, workdir, log=lambda m: None, progress=False)
    model, record = load_model(workdir)
    vocab = json.loads((workdir / "vocab.json").read_text())
    return workdir, model, record, vocab


def reference(model, histories: Histories, k: int) -> list[tuple[list[int], list[float]]]:
    """Top k of every user, written another way: a per-user loop builds the windows, all users are
    scored at once, NumPy masks non-items and the whole history and sorts by (-score, id)."""
    length, num_items = model.info.max_length, model.info.num_items
    count = len(histories)
    items = np.zeros((count, length), np.int32)
    times = np.zeros((count, length), np.int32)
    seen = []
    for user in range(count):
        events = slice(histories.offsets[user], histories.offsets[user + 1])
        recent_items = histories.items[events][-length:]
        recent_times = histories.timestamps[events][-length:]
        if len(recent_items):
            items[user, length - len(recent_items):] = recent_items
            times[user, length - len(recent_times):] = recent_times
        seen.append(set(histories.items[events].tolist()))
    batch = {"users": jnp.asarray(histories.user_ids), "items": jnp.asarray(items), "timestamps": jnp.asarray(times)}
    variables = {"params": model.state.params}
    scoring = model.spec.prepare_scoring(model.module, variables, context=model.context)
    scores = np.array(model.spec.score(model.module, variables, batch, context=model.context, scoring=scoring),
                      np.float64)
    scores[:, 0] = -np.inf
    scores[:, num_items + 1:] = -np.inf
    out = []
    for user in range(count):
        row = scores[user].copy()
        row[list(seen[user])] = -np.inf
        order = np.lexsort((np.arange(len(row)), -row))
        top = [int(i) for i in order[:k] if np.isfinite(row[i])]
        out.append((top, [float(row[i]) for i in top]))
    return out


def assert_same(streamed, expected, history_sets):
    assert len(streamed) == len(expected)
    for (items, scores), (ref_items, ref_scores), seen in zip(streamed, expected, history_sets):
        assert len(items) == len(ref_items)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)
        assert set(items) == set(ref_items)
        assert not set(items) & seen  # history items are never recommended


def streamed_rows(model, histories, k, batch_size, step=None):
    rows = []
    for batch in recommend_batches(model, histories, k, batch_size, step=step):
        for row in range(len(batch.users)):
            count = batch.counts[row]
            rows.append((batch.items[row, :count].tolist(), batch.scores[row, :count].tolist()))
    return rows


def history_sets(histories):
    return [set(histories.items[histories.offsets[u]:histories.offsets[u + 1]].tolist())
            for u in range(len(histories))]


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_streaming_equals_numpy_reference(run, batch_size):
    workdir, model, _, vocab = run
    histories = histories_from_run(workdir, vocab)
    assert len(histories) == len(vocab["users"]) - 1 and histories.longest > model.info.max_length
    assert_same(streamed_rows(model, histories, K, batch_size), reference(model, histories, K),
                history_sets(histories))


def test_jit_compiles_once_across_batches(run):
    workdir, model, _, vocab = run
    histories = histories_from_run(workdir, vocab)
    compiles = CompileCounter()
    step = make_recommend_step(model, K)
    batches = list(recommend_batches(model, histories, K, 7, step=step))
    full, rest = divmod(len(histories), 7)
    assert [len(batch.users) for batch in batches] == [7] * full + ([rest] if rest else [])
    assert compiles.count(step) == 1


def test_k_beyond_unseen_items_drops_masked_entries(run, tmp_path):
    _, model, _, vocab = run
    num_items = model.info.num_items
    # One user has seen all but 3 items, another all of them: 3 and 0 recommendations, never -inf.
    histories = histories_from_dict({"most": [(vocab["items"][i], 1_700_000_000 + i) for i in range(1, num_items - 2)],
                                     "all": [(vocab["items"][i], 1_700_000_000 + i) for i in range(1, num_items + 1)],
                                     "new": []}, vocab)
    for name in ("out.jsonl", "out.parquet"):
        recommend(model, histories, vocab["items"], num_items, str(tmp_path / name), batch_size=2)
    text = (tmp_path / "out.jsonl").read_text()
    assert "Infinity" not in text and "NaN" not in text
    rows = [json.loads(line) for line in text.splitlines()]
    assert [len(row["items"]) for row in rows] == [3, 0, num_items]
    parquet = pq.read_table(tmp_path / "out.parquet").column("items").to_pylist()
    assert parquet == [row["items"] for row in rows]
    index = {token: i for i, token in enumerate(vocab["items"])}
    streamed = [([index[item] for item in row["items"]], row["scores"]) for row in rows]
    assert_same(streamed, reference(model, histories, num_items), history_sets(histories))


def test_jsonl_and_parquet_have_the_same_rows(run, tmp_path):
    workdir, model, _, vocab = run
    histories = histories_from_run(workdir, vocab)
    summaries = [recommend(model, histories, vocab["items"], K, str(tmp_path / name), batch_size=16)
                 for name in ("rows.jsonl", "rows.parquet")]
    assert all(s["users"] == len(histories) for s in summaries)
    jsonl = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    parquet = pq.read_table(tmp_path / "rows.parquet").to_pylist()
    assert [r["user"] for r in jsonl] == [r["user"] for r in parquet] == [str(u) for u in vocab["users"][1:]]
    for left, right in zip(jsonl, parquet):
        assert left["items"] == right["items"] and left["known_history"] == right["known_history"]
        np.testing.assert_allclose(left["scores"], right["scores"], atol=1e-5)
    # known_history counts distinct known items: the NumPy way.
    assert [r["known_history"] for r in jsonl] == [len(s) for s in history_sets(histories)]


def test_users_all_covers_every_user(run, tmp_path):
    workdir, _, _, vocab = run
    out = tmp_path / "all.jsonl"
    result = CliRunner().invoke(main, ["recommend", "--workdir", str(workdir), "--users", "all", "--k", "3",
                                       "--out", str(out), "--batch-size", "10", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["user"] for r in rows] == [str(u) for u in vocab["users"][1:]]
    assert all(len(r["items"]) == min(3, 50 - r["known_history"]) for r in rows)
    assert f"{len(rows)} users; history items unknown to the model and skipped: 0;" in result.output


def test_history_file_with_iso_timestamps_matches_reference(run, tmp_path):
    workdir, model, _, vocab = run
    items = vocab["items"][1:8]
    seconds = [1_714_564_800 + 3600 * i for i in range(len(items))]  # 2024-05-01T12:00:00Z onwards
    iso = [f"2024-05-01T{12 + i:02d}:00:00" for i in range(len(items))]
    history = tmp_path / "iso.csv"
    history.write_text("user,item,timestamp\n" + "".join(f"ann,{i},{t}\n" for i, t in zip(items, iso)))
    histories = histories_from_dict(read_histories(str(history)), vocab)
    assert histories.timestamps.tolist() == [s - vocab["time_origin"] for s in seconds]  # as integer seconds
    result = CliRunner().invoke(main, ["recommend", "--workdir", str(workdir), "--history", str(history),
                                       "--k", str(K), "--no-progress"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.splitlines()[0])
    assert row["user"] == "ann" and row["known_history"] == len(items)
    expected_items, expected_scores = reference(model, histories, K)[0]
    assert row["items"] == [vocab["items"][i] for i in expected_items]
    np.testing.assert_allclose(row["scores"], expected_scores, atol=1e-5)


def test_a_string_of_items_is_one_item(run, tmp_path):
    workdir, _, _, vocab = run
    history = tmp_path / "one.jsonl"
    history.write_text(json.dumps({"user": "bo", "items": vocab["items"][3], "timestamps": [1_700_000_000]}) + "\n")
    assert read_histories(str(history)) == {"bo": [(vocab["items"][3], 1_700_000_000)]}
    result = CliRunner().invoke(main, ["recommend", "--workdir", str(workdir), "--history", str(history), "--k", "3"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.splitlines()[0])
    assert row["known_history"] == 1 and vocab["items"][3] not in row["items"]
    assert "skipped: 0;" in result.output


@pytest.mark.parametrize("arguments, message", [
    (["--users", "all", "--k", "0"], "--k 0 is out of range: expected 1..50 (the model's items)"),
    ([], "recommend: give exactly one of --history PATH or --users all"),
    (["--users", "all", "--history", "h.csv"], "recommend: give exactly one of --history PATH or --users all"),
    (["--users", "all", "--out", "recs.txt"], "--out recs.txt: expected a .jsonl, .json or .parquet file name"),
])
def test_cli_errors_are_one_line(run, arguments, message):
    workdir, model, _, _ = run
    assert model.info.num_items == 50
    result = CliRunner().invoke(main, ["recommend", "--workdir", str(workdir), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_k_above_the_catalogue_is_clamped_with_a_warning(run, tmp_path):
    workdir, _, _, _ = run
    out = tmp_path / "all.jsonl"
    result = CliRunner().invoke(main, ["recommend", "--workdir", str(workdir), "--users", "all", "--k", "10000000",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: --k 10000000 is more than the model's 50 items; using 50" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(len(row["items"]) == 50 - row["known_history"] for row in rows)
    assert all(0 < len(row["items"]) <= 50 and "<pad>" not in row["items"] for row in rows)


@pytest.mark.parametrize("name, content, message", [
    ("latin1.csv", "user,item,timestamp\nal,i00001,5\nzo\xe9,i00002,6\n".encode("latin-1"),
     "latin1.csv:3: not UTF-8 text (byte 0xe9 at offset 34)"),
    ("latin1.jsonl", '{"user": "zo\xe9", "items": ["a"]}\n'.encode("latin-1"), "latin1.jsonl:1: not UTF-8 text"),
    ("bad.csv", b"user,item,timestamp\nbob,x,yesterday\n",
     "bad.csv:2: field 'timestamp': expected integer seconds, found 'yesterday' (or an ISO-8601 date-time such as "
     "2024-05-01T12:00:00)"),
    ("inf.csv", b"user,item,timestamp\nbob,x,inf\n", "inf.csv:2: field 'timestamp': expected integer seconds"),
    ("huge.csv", b"user,item,timestamp\nbob,x,1e30\n", "huge.csv:2: field 'timestamp': expected integer seconds, "
                                                        "found '1e30'"),
    ("huge.jsonl", b'{"user": "a", "items": ["x"], "timestamps": [1e30]}\n',
     "huge.jsonl:1: field 'timestamps': expected integer seconds or ISO-8601 date-times, found 1e+30"),
    ("noitem.csv", b"user,item,timestamp\nbob,,5\n", "noitem.csv:2: field 'item': expected a value, found none"),
    ("stamps.jsonl", b'{"user": "a", "items": ["x", "y"], "timestamps": [1, "soon"]}\n',
     "stamps.jsonl:1: field 'timestamps': expected integer seconds or ISO-8601 date-times, found 'soon'"),
    ("nested.jsonl", b'\n{"user": "a", "items": [["x"]]}\n', "nested.jsonl:2: expected {user, items, timestamps} JSON"),
    ("count.jsonl", b'{"user": "a", "items": ["x", "y"], "timestamps": [1]}\n',
     "count.jsonl:1: field 'timestamps': expected one timestamp per item"),
])
def test_bad_history_files_give_located_one_line_errors(run, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(message)):
        read_histories(str(path))
    workdir = run[0]
    result = CliRunner().invoke(main, ["recommend", "--workdir", str(workdir), "--history", str(path)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_recent_distinct_equals_a_python_loop():
    rng = np.random.default_rng(3)
    window = rng.integers(0, 6, (11, 9)).astype(np.int32)
    window[2] = 0
    for width in (1, 4, 9):
        expected = np.zeros((len(window), width), np.int32)
        for row, values in enumerate(window.tolist()):
            recent = []
            for item in reversed(values):  # most recent first
                if item and item not in recent:
                    recent.append(item)
            kept = list(reversed(recent[:width]))
            expected[row, width - len(kept):] = kept
        np.testing.assert_array_equal(_recent_distinct(window, width), expected)


class BagScorer(nn.Module):
    """A bag-of-items model for the test: the mean of the bag's item vectors against every item."""

    rows: int

    @nn.compact
    def __call__(self, bag):
        table = self.param("table", nn.initializers.normal(1.0), (self.rows, 8))
        present = (bag > 0)[..., None]
        user = jnp.sum(table[bag] * present, axis=1) / jnp.maximum(present.sum(axis=1), 1)
        return user @ table.T  # [B, W]


def bag_model(model, kind="bag", max_bag=3):
    module = BagScorer(model.info.item_rows)
    spec = ModelSpec(f"test_{kind}", lambda: None, lambda c, i: module, lambda *a, **k: ({}, {}),
                     score=lambda module, variables, batch, context=None, scoring=None: module.apply(variables,
                                                                                                        batch["bag"]),
                     batch_kind=kind)
    params = module.init(jax.random.key(0), jnp.zeros((1, max_bag), jnp.int32))["params"]
    state = dataclasses.replace(model.state, params=params)
    return dataclasses.replace(model, spec=spec, module=module, state=state,
                               info=dataclasses.replace(model.info, max_bag=max_bag))


def test_bag_models_read_the_most_recent_distinct_items(run):
    workdir, model, _, vocab = run
    bags = bag_model(model)
    histories = histories_from_run(workdir, vocab)
    streamed = streamed_rows(bags, histories, K, 16)
    variables = {"params": bags.state.params}
    for user in range(len(histories)):
        events = histories.items[histories.offsets[user]:histories.offsets[user + 1]].tolist()
        recent = []
        for item in reversed(events):
            if item not in recent:
                recent.append(item)
        bag = np.zeros((1, 3), np.int32)
        bag[0, 3 - len(recent[:3]):] = list(reversed(recent[:3]))
        row = np.array(bags.module.apply(variables, jnp.asarray(bag))[0], np.float64)
        row[0] = -np.inf
        row[model.info.num_items + 1:] = -np.inf
        row[events] = -np.inf
        top = np.array([i for i in np.lexsort((np.arange(len(row)), -row))[:K] if np.isfinite(row[i])], int)
        assert set(streamed[user][0]) == set(top.tolist())
        np.testing.assert_allclose(streamed[user][1], row[top], rtol=1e-4, atol=1e-5)


def test_other_batch_kinds_are_a_clear_error(run):
    workdir, model, _, vocab = run
    other = bag_model(model, kind="temporal_neighbours")
    with pytest.raises(RecommendError, match="model 'test_temporal_neighbours' reads 'temporal_neighbours' "
                                             "batches; recommend serves models"):
        next(recommend_batches(other, histories_from_run(workdir, vocab), K))


def test_a_graph_model_recommends_for_its_known_users(tmp_path):
    """LightGCN (pairs batches, propagation once in prepare_scoring) streams the same top-K as
    scoring every user at once; a user it never trained on is a clear error."""
    config = load_config(str(ROOT / "experiments" / "lightgcn_ml100k.py") + ":tiny", ["--config.train.num_epochs=2"])
    train_and_evaluate(config, tmp_path, log=lambda m: None, progress=False)
    model, _ = load_model(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    histories = histories_from_run(tmp_path, vocab)
    streamed = streamed_rows(model, histories, K, 16)
    variables = {"params": model.state.params}
    scoring = model.spec.prepare_scoring(model.module, variables, context=model.context)
    users = jnp.asarray(histories.user_ids)
    scores = np.array(model.spec.score(model.module, variables, {"users": users}, context=model.context,
                                       scoring=scoring), np.float64)
    for row, user in enumerate(range(len(histories))):
        events = histories.items[histories.offsets[user]:histories.offsets[user + 1]]
        line = scores[row].copy()
        line[0] = -np.inf
        line[model.info.num_items + 1:] = -np.inf
        line[events] = -np.inf
        top = [i for i in np.lexsort((np.arange(len(line)), -line))[:K].tolist() if np.isfinite(line[i])]
        assert streamed[user][0] == top
    stranger = histories_from_dict({"stranger": [(vocab["items"][1], 5)]}, vocab)
    with pytest.raises(RecommendError, match="model 'lightgcn' scores only the users it was trained on; 1 of the "
                                             "given users are unknown to it"):
        next(recommend_batches(model, stranger, K))


MULTI_DEVICE = """
import json, sys
from stjax.serving.recommend import histories_from_run, recommend_batches, round_batch_size
from stjax.train.loop import load_model
workdir = sys.argv[1]
model, _ = load_model(workdir, num_devices=2)
histories = histories_from_run(workdir, json.loads(open(workdir + "/vocab.json").read()))
rows = [(b.items[r, :b.counts[r]].tolist(), b.scores[r, :b.counts[r]].tolist())
        for b in recommend_batches(model, histories, 5, 7) for r in range(len(b.users))]
print(json.dumps({"batch_size": round_batch_size(7, model), "rows": rows}))
"""


def test_two_data_parallel_devices_give_the_same_rows(run):
    """Batches split over a 2-device mesh (batch size 7 rounded to 8) give the single-device rows."""
    workdir, model, _, vocab = run
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", MULTI_DEVICE, str(workdir)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["batch_size"] == 8
    histories = histories_from_run(workdir, vocab)
    assert_same([tuple(row) for row in result["rows"]], reference(model, histories, K), history_sets(histories))
