"""`stjax update`: a trained run continued on new events. Old rows keep their values (checked by
slicing the checkpoints, not through the update's row maps), Adam's moments carry over, new rows
are the model's own init on the new sizes, new users and items are scored, the update trains, the
same seed gives the same parameters, the CLI and `stjax evaluate`/`recommend` work on the updated
folder, and bad input is one line with exit status 2."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import optax
import pyarrow.csv as pacsv
import pytest
from click.testing import CliRunner

from stjax.cli import main
from stjax.config import base_config, tiny
from stjax.data.splits import TRAIN, Split
from stjax.data.synthetic import SyntheticConfig, generate
from stjax.data.table import Vocab, make_log
from stjax.models.base import DataInfo
from stjax.runs import RunError, RunFolder
from stjax.serving.recommend import recommend_rows
from stjax.train import train_and_evaluate
from stjax.train.build import build_model
from stjax.train.loop import load_model
from stjax.train.update import (
    UpdateError,
    fresh_windows,
    grow_leaf,
    grow_vocab,
    row_maps,
    update_run,
)

NEW_USERS = ("newcomer-1", "newcomer-2", "newcomer-3")
NEW_ITEMS = ("fresh-item-1", "fresh-item-2")


# ----------------------------------------------------------------------------- pure pieces


def test_grow_vocab_keeps_old_indices_and_appends_new_tokens_in_order():
    old = Vocab.from_tokens(["a", "b", "c"])
    new = Vocab.from_tokens(["z", "b", "y", "a"])
    grown, where = grow_vocab(old, new)
    assert grown.tokens.tolist() == ["<pad>", "a", "b", "c", "z", "y"]
    assert where.tolist() == [0, 4, 2, 5, 1]
    assert grown.tokens[where[1:]].tolist() == new.tokens[1:].tolist()


def _random_split(seed: int, users: int = 5, events: int = 60):
    rng = np.random.default_rng(seed)
    user = np.sort(rng.integers(0, users, events))
    log = make_log(user.astype(str), rng.integers(0, 9, events).astype(str), np.arange(events) * 10 + 1000)
    log = log.sort_by_user_time()
    part = np.where(rng.random(events) < 0.15, 1, TRAIN).astype(np.int8)
    return Split(log, part, "temporal"), rng.random(events) < 0.4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fresh_windows_make_every_fresh_event_a_target_once_with_its_history(seed):
    """Against a loop over each user's TRAIN events: with window 'all' every fresh event after the
    user's first TRAIN event is a target exactly once, its inputs up to max_length earlier TRAIN events
    in order; no other event is a target. 'last' windows are the user's last max_length + 1 events."""
    split, fresh = _random_split(seed)
    max_length = 4
    log = split.log
    train = np.flatnonzero(split.part == TRAIN)
    expected = {}  # (user, target item, target time) -> count
    by_user = {}
    for row in train:
        by_user.setdefault(int(log.user[row]), []).append(row)
    for user, rows in by_user.items():
        for position, row in enumerate(rows):
            if position and fresh[row]:
                key = (user, int(log.item[row]), int(log.timestamp[row] - log.timestamp.min()))
                expected[key] = expected.get(key, 0) + 1
    windows = fresh_windows(split, fresh, max_length, "all")
    seen = {}
    for r in range(len(windows["users"])):
        user = int(windows["users"][r])
        history = [(int(log.item[row]), int(log.timestamp[row] - log.timestamp.min())) for row in by_user[user]]
        for t in range(max_length):
            if windows["targets"][r, t]:
                key = (user, int(windows["targets"][r, t]), int(windows["target_times"][r, t]))
                seen[key] = seen.get(key, 0) + 1
                # The inputs up to t are the TRAIN events just before the target, in order.
                at = history.index((key[1], key[2]))
                inputs = [(int(i), int(s)) for i, s in zip(windows["items"][r, :t + 1], windows["timestamps"][r, :t + 1])
                          if i > 0]
                assert inputs == history[max(0, at - len(inputs)):at] and inputs[-1] == history[at - 1]
    assert seen == expected
    last = fresh_windows(split, fresh, max_length, "last")
    for r in range(len(last["users"])):
        rows = by_user[int(last["users"][r])]
        window = [int(log.item[row]) for row in rows[-(max_length + 1):]]
        assert [int(i) for i in last["items"][r] if i > 0] == window[:-1]
        assert all(fresh[rows[len(rows) - max_length + t]] for t in range(max_length) if last["targets"][r, t])


def test_row_maps_move_special_rows_and_refuse_what_is_no_table():
    """BERT4Rec-like item rows padded to 4 shards: 5 items + padding + [mask] = 7 -> 8 rows; 7 items -> 12.
    Rows 0..5 stay, the [mask] row 6 moves to 8 (above the new items), new items keep the fresh init."""
    old, new = DataInfo(20, 5, 4, item_shards=4), DataInfo(23, 7, 4, item_shards=4)
    maps = row_maps(old, new)
    before = np.arange(8 * 2, dtype=np.float32).reshape(8, 2)
    fresh = -np.ones((12, 2), np.float32)
    grown = grow_leaf(before, fresh, maps, ("vocab", "embed"), "table")
    np.testing.assert_array_equal(grown[:6], before[:6])
    np.testing.assert_array_equal(grown[8], before[6])
    np.testing.assert_array_equal(grown[6:8], fresh[6:8])
    users = grow_leaf(np.ones((21, 3)), np.zeros((24, 3)), maps, (), "users")
    assert users[:21].sum() == 63 and users[21:].sum() == 0
    columns = grow_leaf(np.ones((3, 5)), np.zeros((3, 7)), maps, (), "decoder")  # [hidden, I]: items 1..I
    assert columns[:, :5].sum() == 15 and columns[:, 5:].sum() == 0
    with pytest.raises(UpdateError, match="neither a user nor an item axis"):
        grow_leaf(np.ones((3,)), np.zeros((4,)), maps, (), "model x: bias")


# ----------------------------------------------------------------------------- a run and its updates


def _write(log, path: Path) -> Path:
    pacsv.write_csv(log.to_arrow(), path, pacsv.WriteOptions(delimiter="\t"))
    return path


@pytest.fixture(scope="module")
def periods(tmp_path_factory):
    """A synthetic log split by time: base (70%), new (15%, plus three new users and two new items), next."""
    folder = tmp_path_factory.mktemp("periods")
    log, _ = generate(0, SyntheticConfig(num_users=60, num_items=50, num_events=3000))
    order = np.argsort(log.timestamp, kind="stable")
    base_rows, new_rows, next_rows = np.split(order, [int(0.7 * len(order)), int(0.85 * len(order))])
    base, new, following = (log.select(np.sort(rows)) for rows in (base_rows, new_rows, next_rows))
    start = int(new.timestamp.min())
    old_users = base.user_vocab.tokens[np.unique(base.user)][:3].astype(str).tolist()
    old = base.item_vocab.tokens[np.unique(base.item)][:7].astype(str).tolist()
    users = [u for u in NEW_USERS for _ in range(4)] + old_users
    items = [old[0], NEW_ITEMS[0], old[1], NEW_ITEMS[1], NEW_ITEMS[0], old[2], old[3], NEW_ITEMS[1], old[4], old[5],
             NEW_ITEMS[0], old[6], NEW_ITEMS[0], NEW_ITEMS[1], NEW_ITEMS[0]]
    extra = make_log(users, items, start + 60 * np.arange(len(users)))
    table = new.to_arrow()
    import pyarrow as pa

    columns = {name: pa.concat_arrays([table[name].combine_chunks(), extra.to_arrow()[name].combine_chunks()])
               for name in ("user", "item", "timestamp")}
    new_path = folder / "new.tsv"
    pacsv.write_csv(pa.table(columns), new_path, pacsv.WriteOptions(delimiter="\t"))
    tokens = lambda log, column: set(getattr(log, f"{column}_vocab").tokens[getattr(log, column)].astype(str))  # noqa: E731
    return {"base": _write(base, folder / "base.tsv"), "new": new_path, "next": _write(following, folder / "next.tsv"),
            "base_origin": int(base.timestamp.min()),
            "new_users": len((tokens(new, "user") | set(NEW_USERS)) - tokens(base, "user")),
            "new_items": len((tokens(new, "item") | set(NEW_ITEMS)) - tokens(base, "item"))}


def _config(model: str, base: Path):
    config = tiny(base_config(model))
    config.data.source = str(base)
    config.train.num_epochs = 2
    config.train.eval_every_epochs = 2
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, periods):
    workdir = tmp_path_factory.mktemp("base") / "run"
    train_and_evaluate(_config("sasrec", periods["base"]), workdir, log=lambda m: None, progress=False)
    return workdir


def _copy(workdir: Path, target: Path) -> Path:
    shutil.copytree(workdir, target, ignore=shutil.ignore_patterns(".lock"))
    return target


def _full_state(workdir: Path):
    """The best checkpoint's whole state (params and optimizer state) of a run folder, as NumPy."""
    folder = RunFolder(workdir)
    model = build_model(folder.config(), folder.info(), folder.context() or {})
    state, _, step = folder.restore(model.abstract_state(), prefer_best=True, log=lambda m: None)
    return jax.device_get(state), step


def _old_slices_equal(old_tree, new_tree) -> int:
    """Every leaf that grew holds the old leaf in its leading corner (the slice of the old shape), bit for
    bit; returns how many leaves grew."""
    grew = 0
    for old, new in zip(jax.tree_util.tree_leaves(old_tree), jax.tree_util.tree_leaves(new_tree)):
        old, new = np.asarray(old), np.asarray(new)
        if old.shape != new.shape:
            grew += 1
            np.testing.assert_array_equal(new[tuple(slice(0, n) for n in old.shape)], old)
    return grew


@pytest.fixture(scope="module")
def grown(tmp_path_factory, trained, periods):
    """The run updated with no training step: the state as grown."""
    workdir = _copy(trained, tmp_path_factory.mktemp("grown") / "run")
    record = update_run(workdir, periods["new"], num_steps=0, eval_events=periods["next"], log=lambda m: None)
    return workdir, record


def test_growth_keeps_old_rows_and_moments_and_new_rows_are_the_models_init(trained, grown, periods):
    workdir, record = grown
    assert (record["new_users"], record["new_items"]) == (periods["new_users"], periods["new_items"]) >= (3, 2)
    assert record["steps"] == 0
    before, before_step = _full_state(trained)
    after, after_step = _full_state(workdir)
    assert after_step == record["from_step"] and record["from_best_step"] == before_step
    assert _old_slices_equal(before.params, after.params) >= 1  # the item table, at least
    assert _old_slices_equal(before.opt_state, after.opt_state) >= 2  # its mu and nu
    # New item rows: the model's init on the new sizes with the run's seed; their moments are zero.
    folder = RunFolder(workdir)
    fresh = jax.device_get(build_model(folder.config(), folder.info()).state)
    old_items, new_items = before.params["item_embedding"]["embedding"].shape[0], folder.info().item_rows
    np.testing.assert_array_equal(after.params["item_embedding"]["embedding"][old_items:new_items],
                                  fresh.params["item_embedding"]["embedding"][old_items:new_items])
    moments = [leaf for leaf in jax.tree_util.tree_leaves(after.opt_state) if np.shape(leaf)[:1] == (new_items,)]
    assert moments and all(not np.asarray(m)[old_items:].any() for m in moments)
    # Adam's count carries over; the schedule restarts.
    counts = [s for s in jax.tree_util.tree_leaves(after.opt_state, is_leaf=lambda x: hasattr(x, "mu"))
              if isinstance(s, optax.ScaleByAdamState)]
    assert counts and int(counts[0].count) == int(jax.tree_util.tree_leaves(
        before.opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))[0].count) > 0
    schedules = [s for s in jax.tree_util.tree_leaves(after.opt_state, is_leaf=lambda x: isinstance(
        x, optax.ScaleByScheduleState)) if isinstance(s, optax.ScaleByScheduleState)]
    assert schedules and all(int(s.count) == 0 for s in schedules)


def test_the_folder_records_the_update_and_grows_its_vocabulary(trained, grown):
    workdir, record = grown
    old_vocab = json.loads((trained / "vocab.json").read_text())
    vocab = json.loads((workdir / "vocab.json").read_text())
    assert vocab["items"][:len(old_vocab["items"])] == old_vocab["items"]
    assert vocab["users"][:len(old_vocab["users"])] == old_vocab["users"]
    assert set(NEW_ITEMS) <= set(vocab["items"][len(old_vocab["items"]):])
    assert set(NEW_USERS) <= set(vocab["users"][len(old_vocab["users"]):])
    info = RunFolder(workdir).info()
    assert (info.num_users, info.num_items) == (len(vocab["users"]) - 1, len(vocab["items"]) - 1)
    lines = [json.loads(line) for line in (workdir / "updates.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["update"] == 1 and lines[0]["events"][1] > lines[0]["events"][0]
    assert record["following"]["num_users"] > 0 and not (workdir / ".update").exists()
    # The union's log is the run's log plus the new events, old events unchanged.
    old_log, new_log = RunFolder(trained).log(), RunFolder(workdir).log()
    assert len(new_log) == len(old_log) + record["new_events"]
    old_events = {(str(old_log.user_vocab.tokens[u]), str(old_log.item_vocab.tokens[i]), int(t))
                  for u, i, t in zip(old_log.user, old_log.item, old_log.timestamp)}
    new_events = {(str(new_log.user_vocab.tokens[u]), str(new_log.item_vocab.tokens[i]), int(t))
                  for u, i, t in zip(new_log.user, new_log.item, new_log.timestamp)}
    assert old_events <= new_events


def test_new_users_and_items_are_scored(grown):
    workdir, _ = grown
    model, _ = load_model(workdir)
    vocab = json.loads((workdir / "vocab.json").read_text())
    history = {NEW_USERS[0]: [(vocab["items"][3], 1), (NEW_ITEMS[1], 2)]}
    rows, _ = recommend_rows(model, history, vocab, k=model.info.num_items)
    ranked = rows[0]["items"]
    assert NEW_ITEMS[0] in ranked and NEW_ITEMS[1] not in ranked  # history items are excluded
    assert len(ranked) == model.info.num_items - 2 and np.isfinite(rows[0]["scores"]).all()


def _new_event_loss(workdir: Path, base: Path) -> float:
    """Mean cross-entropy of a run folder's best checkpoint at the new events (those of the union not in
    the base run's log) that are TRAIN events of the union's split, each with its history as input."""
    model, _ = load_model(workdir)
    union = RunFolder(workdir).log()
    old = RunFolder(base).log()
    known = {(str(old.user_vocab.tokens[u]), str(old.item_vocab.tokens[i]), int(t))
             for u, i, t in zip(old.user, old.item, old.timestamp)}
    is_new = np.asarray([(str(union.user_vocab.tokens[u]), str(union.item_vocab.tokens[i]), int(t)) not in known
                         for u, i, t in zip(union.user, union.item, union.timestamp)])
    split = Split(union, np.load(workdir / "updates" / "split.npz")["part"], "leave_one_out")
    rows = fresh_windows(split, is_new & (split.part == TRAIN), model.info.max_length, "all")
    batch = {k: jax.numpy.asarray(v) for k, v in rows.items()} | {"weights": jax.numpy.ones(len(rows["users"]))}
    scores = model.spec.example_scores(model.module, {"params": model.state.params}, batch, config=model.config.model)
    return float(scores["loss"].sum() / scores["targets"].sum())


def test_the_cli_update_trains_and_evaluate_and_recommend_work_on_the_folder(tmp_path, trained, grown, periods):
    first = _copy(trained, tmp_path / "first")
    result = CliRunner().invoke(main, ["update", "--workdir", str(first), "--data", str(periods["new"]),
                                       "--steps", "6", "--eval-data", str(periods["next"]), "--no-progress",
                                       "--keep-previous"])
    assert result.exit_code == 0, result.output
    assert "following period" in result.output and "updates.jsonl" in result.output
    previous = first / "updates" / "1" / "previous"
    assert (previous / "checkpoints").is_dir()
    assert (previous / "vocab.json").read_text() == (trained / "vocab.json").read_text()
    # The update trains: the new events' loss drops below the grown (untrained) state's.
    assert _new_event_loss(first, trained) < _new_event_loss(grown[0], trained)
    evaluated = CliRunner().invoke(main, ["evaluate", "--workdir", str(first)])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.output.strip().splitlines()[-1])
    saved = json.loads((first / "results.json").read_text())
    assert metrics["test"]["ndcg@10"] == pytest.approx(saved["test"]["ndcg@10"], rel=1e-5)
    history = tmp_path / "history.csv"
    history.write_text(f"user,item,timestamp\n{NEW_USERS[1]},{NEW_ITEMS[0]},{periods['base_origin'] + 10**7}\n")
    served = CliRunner().invoke(main, ["recommend", "--workdir", str(first), "--history", str(history), "--k", "3"])
    assert served.exit_code == 0, served.output
    row = json.loads([line for line in served.output.splitlines() if line.startswith("{")][0])
    assert row["user"] == NEW_USERS[1] and row["known_history"] == 1 and len(row["items"]) == 3


@pytest.mark.slow
def test_the_same_seed_gives_the_same_parameters_and_a_second_update_continues(tmp_path, trained, periods):
    first, second = _copy(trained, tmp_path / "first"), _copy(trained, tmp_path / "second")
    records = [update_run(folder, periods["new"], num_steps=6, eval_events=periods["next"], log=lambda m: None)
               for folder in (first, second)]
    assert records[0]["steps"] == 6 and records[0]["valid"] == records[1]["valid"]
    one, _ = _full_state(first)
    two, _ = _full_state(second)
    for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(two)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    again = update_run(first, periods["next"], num_steps=2, log=lambda m: None)
    assert again["update"] == 2 and again["from_step"] == records[0]["from_step"] + 6
    assert len((first / "updates.jsonl").read_text().splitlines()) == 2


def test_bad_input_is_one_line_and_exit_2(tmp_path, trained, periods):
    runner = CliRunner()

    def fails(args, message):
        result = runner.invoke(main, ["update", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output

    work = str(trained)
    fails(["--workdir", work, "--data", str(tmp_path / "missing.tsv")], "no such file or directory")
    fails(["--workdir", work, "--data", str(periods["new"]), "--columns", "user=uid,item=item,timestamp=timestamp"],
          "uid")
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text("who\twhat\n1\t2\n")
    fails(["--workdir", work, "--data", str(wrong)], "wrong.tsv")
    early = tmp_path / "early.tsv"
    early.write_text(f"user\titem\ttimestamp\n1\t3\t{periods['base_origin'] - 100}\n")
    fails(["--workdir", work, "--data", str(early)], "older than the run's first event")
    fails(["--workdir", str(tmp_path), "--data", str(periods["new"])], "not a run folder")
    bare = _copy(trained, tmp_path / "bare")
    shutil.rmtree(bare / "checkpoints")
    fails(["--workdir", str(bare), "--data", str(periods["new"])], "no checkpoint yet")


def test_training_does_not_resume_an_updated_run(grown, periods):
    with pytest.raises(RunError, match="updated on new events"):
        RunFolder(grown[0]).check_resumable(_config("sasrec", periods["base"]))


# ----------------------------------------------------------------------------- other models


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gru4rec", "lstm", "multvae", "multvae-held-out", "bert4rec", "tisasrec",
                                   "popularity", "lightgcn", "ease", "multdae", "recvae", "lstm_gat", "tgat",
                                   "fusion"])
def test_other_models_grow_and_score_new_users_and_items(tmp_path, periods, model):
    workdir = tmp_path / "run"
    model, _, protocol = model.partition("-")
    config = _config(model, periods["base"])
    if protocol:  # Mult-VAE's: whole users held out, their other events folded in
        config.data.split = "held_out_users"
        config.data.valid_users = config.data.test_users = 10
        config.eval.evaluators = ("fold_in",)
    train_and_evaluate(config, workdir, log=lambda m: None, progress=False)
    before, _ = _full_state(workdir)
    zero = _copy(workdir, tmp_path / "zero")
    update_run(zero, periods["new"], num_steps=0, log=lambda m: None)
    after, _ = _full_state(zero)
    special = 1 if model == "bert4rec" else 0  # its [mask] row sits above the items and moves up
    for old, new in zip(jax.tree_util.tree_leaves(before.params), jax.tree_util.tree_leaves(after.params)):
        old, new = np.asarray(old), np.asarray(new)
        if old.shape != new.shape:
            corner = tuple(slice(0, n - (special if n != m else 0)) for n, m in zip(old.shape, new.shape))
            np.testing.assert_array_equal(new[corner], old[corner])
    record = update_run(workdir, periods["new"], num_steps=2, log=lambda m: None)
    assert (record["new_users"], record["new_items"]) == (periods["new_users"], periods["new_items"])
    loaded, _ = load_model(workdir)
    vocab = json.loads((workdir / "vocab.json").read_text())
    user = NEW_USERS[0] if not loaded.spec.batch_kind == "pairs" else vocab["users"][-1]
    rows, _ = recommend_rows(loaded, {user: [(NEW_ITEMS[1], 2)]}, vocab, k=5)
    assert len(rows[0]["items"]) == 5 and np.isfinite(rows[0]["scores"]).all()
