"""Augmentation of sparse users (`stjax.analysis.augment`, `stjax analyze augment`): the truncation,
the draw and the generator's data against a leave-one-out written as a loop over each user's events;
the pseudo-prior events against the real ones (before them, outside the history, never targets);
the command end to end on tiny synthetic data (a generator and two downstream runs), its reuse of
finished runs and its one-line errors."""

import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from stjax.analysis.augment import (
    augment,
    draw_users,
    generator_events,
    make_sparse_users,
    masked_ranks,
    sparse_users,
    summarise,
    user_events,
)
from stjax.cli import main
from stjax.data.splits import TRAIN, leave_one_out
from stjax.data.synthetic import SyntheticConfig, generate
from stjax.data.table import make_log


def _random_log(seed: int = 0, users: int = 13, items: int = 17):
    """Users with 1 to 15 events, timestamps with ties, rows shuffled (file order decides ties)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        for _ in range(int(rng.integers(1, 16))):
            rows.append((f"u{user}", f"i{int(rng.integers(items))}", int(rng.integers(100, 130))))
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    return make_log([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]), rows


def _reference_parts(rows):
    """{user: [(item, time, part)] in time order, ties in file order}: the last event is the test
    event, the one before it (of users with >= 3 events) the validation event, the rest training."""
    by_user = {}
    for user, item, stamp in sorted(rows, key=lambda row: (row[0], row[2])):  # stable: ties keep file order
        by_user.setdefault(user, []).append((item, stamp))
    parts = {}
    for user, events in by_user.items():
        n = len(events)
        labels = ["train"] * n
        if n >= 2:
            labels[-1] = "test"
        if n >= 3:
            labels[-2] = "valid"
        parts[user] = [(item, stamp, label) for (item, stamp), label in zip(events, labels)]
    return parts


def _events(log):
    return Counter(zip(log.user_vocab.tokens[log.user].tolist(), log.item_vocab.tokens[log.item].tolist(),
                       log.timestamp.tolist()))


def test_truncation_keeps_the_last_training_events_and_the_held_out_ones():
    log, rows = _random_log()
    keep = 3
    chosen = ["u1", "u4", "u7", "u12"]
    truncated = make_sparse_users(log, chosen, keep)
    expected = Counter()
    for user, events in _reference_parts(rows).items():
        train = [e for e in events if e[2] == "train"]
        held = [e for e in events if e[2] != "train"]
        kept = (train[-keep:] if user in chosen else train) + held
        expected.update((user, item, stamp) for item, stamp, _ in kept)
    assert _events(truncated) == expected
    reference = _reference_parts([(u, i, t) for (u, i, t), n in expected.items() for _ in range(n)])
    for user in chosen:
        assert sum(label == "train" for *_, label in reference[user]) <= keep
    assert set(sparse_users(truncated, keep)) == {user for user, events in reference.items() if len(events) >= 3
                                                  and sum(label == "train" for *_, label in events) <= keep}


def test_the_draw_is_seeded_and_takes_only_users_with_more_than_keep_training_events():
    log, rows = _random_log(seed=1, users=40)
    keep = 4
    eligible = {user for user, events in _reference_parts(rows).items()
                if sum(label == "train" for *_, label in events) > keep}
    drawn = draw_users(log, 0.5, keep, seed=3)
    assert drawn == draw_users(log, 0.5, keep, seed=3)  # the same seed, the same users
    assert drawn != draw_users(log, 0.5, keep, seed=4)
    assert set(drawn) <= eligible and len(drawn) == round(0.5 * len(eligible))
    assert set(draw_users(log, 0.25, keep, seed=3)) <= set(drawn)  # a smaller share is part of a larger one
    shuffled = make_log(*zip(*reversed(rows)))  # another file order, other internal ids: the same draw
    assert draw_users(shuffled, 0.5, keep, seed=3) == drawn


def test_the_generators_events_hold_no_validation_or_test_event():
    log, rows = _random_log(seed=2)
    expected = Counter((user, item, stamp) for user, events in _reference_parts(rows).items()
                       for item, stamp, label in events if label == "train")
    assert _events(generator_events(log)) == expected


def test_pseudo_priors_come_first_and_are_never_targets():
    log, rows = _random_log(seed=5)
    counts = Counter(user for user, _, _ in rows)
    with_valid = sorted(user for user, count in counts.items() if count >= 3)  # a validation event each
    priors = {with_valid[0]: ["i3", "i5", "i0"], with_valid[1]: ["i16"]}
    augmented, pseudo = augment(log, priors)
    assert pseudo.sum() == 4 and len(augmented) == len(log) + 4
    assert _events(augmented.select(~pseudo)) == _events(log)
    first = {}
    for user, _, stamp in rows:
        first[user] = min(first.get(user, stamp), stamp)
    users = augmented.user_vocab.tokens[augmented.user]
    items = augmented.item_vocab.tokens[augmented.item]
    for user, ranked in priors.items():
        mine = pseudo & (users == user)
        # item r (best first) at the first real time minus r seconds: before every real event
        assert items[mine].tolist() == ranked[::-1]
        assert augmented.timestamp[mine].tolist() == [first[user] - r for r in range(len(ranked), 0, -1)]
    # The held-out events of the augmented log are the real ones: no pseudo-prior event is a target.
    part = leave_one_out(augmented).part
    assert not (pseudo & (part != TRAIN)).any()
    plain = leave_one_out(log.sort_by_user_time())
    held = plain.log.select(plain.part != TRAIN)
    assert _events(augmented.select(part != TRAIN)) == _events(held)


def test_summarise_gives_the_sample_standard_deviation():
    out = summarise([0.1, 0.2, 0.6])
    assert out["mean"] == pytest.approx(0.3)
    assert out["std"] == pytest.approx(np.sqrt(((0.1 - 0.3) ** 2 + (0.1) ** 2 + 0.3 ** 2) / 2))
    assert summarise([0.5])["std"] is None


# ----------------------------------------------------------------------------- end to end

TINY = ["--generator", "experiments/multvae_ml100k.py:tiny", "--downstream", "experiments/sasrec_ml100k.py:tiny",
        "--seeds", "1", "--epochs", "2", "--sparse-share", "0.4", "--keep", "3", "--add", "4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """48 synthetic users (each with more than 5 events) as a TSV file."""
    log, _ = generate(0, SyntheticConfig(num_users=48, num_items=40, num_events=1500))
    path = tmp_path_factory.mktemp("augment-data") / "events.tsv"
    path.write_text("user\titem\ttimestamp\n" + "".join(
        f"{u}\t{i}\t{t}\n" for u, i, t in zip(log.user_vocab.tokens[log.user], log.item_vocab.tokens[log.item],
                                               log.timestamp)))
    return path


@pytest.fixture(scope="module")
def experiment(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("augment") / "out"
    result = CliRunner().invoke(main, ["analyze", "augment", "--data", str(data), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return data, out, result.output, json.loads((out / "augment.json").read_text())


def _parquet_events(path):
    table = pq.read_table(path, columns=["user", "item", "timestamp"]).to_pydict()
    return list(zip(table["user"], table["item"], table["timestamp"]))


def test_the_command_measures_both_arms_and_prints_the_table(experiment):
    _, out, printed, output = experiment
    assert "sparse (" in printed and "ndcg@10" in printed and "written:" in printed
    assert set(output["table"]) == {f"{protocol}/{group}/{name}" for protocol in ("same_mask", "history_masked")
                                    for group in ("sparse", "all") for name in ("ndcg@10", "hr@10")}
    assert output["users"]["drawn_sparse"] == round(0.4 * 48)  # every synthetic user has > 3 training events
    assert output["events"]["pseudo_prior"] == 4 * output["users"]["sparse"]
    truncated = _parquet_events(out / "data" / "truncated.parquet")
    last = {}
    for user, item, _ in truncated:  # rows are in (user, time) order
        last[user] = item
    for arm in ("plain", "augmented"):
        (run,) = output["runs"][arm]
        rows = np.load(out / "runs" / f"{arm}-seed0" / "test_rows.npz")
        vocab = json.loads((out / "runs" / f"{arm}-seed0" / "vocab.json").read_text())
        users = [vocab["users"][u] for u in rows["users"]]
        assert run["history_masked"]["all"]["users"] == len(set(users)) == 48  # every user has a test row
        assert run["history_masked"]["all"]["ndcg@10"] == pytest.approx(float(np.mean(rows["ndcg@10"])))
        # The test targets are each user's real last event, in both arms.
        assert [vocab["items"][t] for t in rows["targets"][:, 0]] == [last[u] for u in users]
    (plain,) = output["runs"]["plain"]
    for group in ("sparse", "all"):  # without pseudo-prior items the two masks agree (float32 rows)
        assert plain["same_mask"][group] == pytest.approx(plain["history_masked"][group], rel=1e-6)


def test_masked_ranks_reproduce_the_engines_ranks_and_free_the_pseudo_priors(experiment):
    _, out, _, _ = experiment
    from stjax.data.formats import load

    run = out / "runs" / "augmented-seed0"
    augmented = load(out / "data" / "augmented.parquet").log
    truncated = load(out / "data" / "truncated.parquet").log
    events = user_events(augmented, augmented.user_vocab.tokens[1:])
    targets = {user: seen[-1][0] for user, seen in events.items()}
    inputs = {user: seen[:-1] for user, seen in events.items()}
    rows = np.load(run / "test_rows.npz")
    vocab = json.loads((run / "vocab.json").read_text())
    engine = {vocab["users"][u]: int(r) for u, r in zip(rows["users"], rows["ranks"][:, 0])}
    everything = {user: {item for item, _ in seen} for user, seen in inputs.items()}
    assert masked_ranks(run, inputs, targets, everything) == engine
    real = {user: {item for item, _ in seen[:-1]} for user, seen in user_events(truncated, targets).items()}
    freed = masked_ranks(run, inputs, targets, real)
    # Ranking the pseudo-prior items again can only push a target down, and only for augmented users.
    assert all(freed[user] >= engine[user] for user in engine)
    augmented_users = {user for user in inputs if everything[user] != real[user]}
    assert augmented_users and {user for user in engine if freed[user] != engine[user]} <= augmented_users


def test_the_generator_never_sees_a_validation_or_test_event(experiment):
    _, out, _, _ = experiment
    from stjax.runs import RunFolder

    truncated = _parquet_events(out / "data" / "truncated.parquet")
    by_user = {}
    for event in truncated:
        by_user.setdefault(event[0], []).append(event)
    held = {event for events in by_user.values() for event in (events[-2:] if len(events) >= 3 else events[-1:])}
    folder = RunFolder(out / "generator")
    generator_log = folder.log()
    seen = set(zip(generator_log.user_vocab.tokens[generator_log.user].tolist(),
                   generator_log.item_vocab.tokens[generator_log.item].tolist(), generator_log.timestamp.tolist()))
    assert seen and not seen & held
    # It sees every training event of the users its protocol keeps (data.min_length training events).
    training = set(truncated) - held
    long_enough = {user for user, events in by_user.items()
                   if len(events) - 2 >= folder.config().data.min_length}
    assert seen == {event for event in training if event[0] in long_enough}


def test_pseudo_priors_precede_the_real_history_and_are_new_to_it(experiment):
    _, out, _, output = experiment
    truncated = _parquet_events(out / "data" / "truncated.parquet")
    augmented = _parquet_events(out / "data" / "augmented.parquet")
    added = Counter(augmented) - Counter(truncated)
    assert sum(added.values()) == output["events"]["pseudo_prior"]
    real = {}
    for user, item, stamp in truncated:
        real.setdefault(user, []).append((item, stamp))
    pseudo = {}
    for user, item, stamp in added:
        pseudo.setdefault(user, []).append((item, stamp))
    assert len(pseudo) == output["users"]["sparse"]
    for user, events in pseudo.items():
        history = real[user][:-2]  # the training events (each synthetic user has >= 3 events)
        assert len(history) <= 3
        assert max(stamp for _, stamp in events) < min(stamp for _, stamp in real[user])
        assert not {item for item, _ in events} & {item for item, _ in history}
        assert len({item for item, _ in events}) == 4


def test_a_rerun_reuses_the_runs_and_other_settings_are_refused(experiment, monkeypatch):
    data, out, _, output = experiment
    import stjax.train

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(stjax.train, "train_and_evaluate", refuse)
    again = CliRunner().invoke(main, ["analyze", "augment", "--data", str(data), "--out", str(out), *TINY])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "augment.json").read_text())["table"] == output["table"]
    other = CliRunner().invoke(main, ["analyze", "augment", "--data", str(data), "--out", str(out),
                                      *TINY[:-2], "--add", "5"])
    assert other.exit_code == 2 and "other settings" in other.output and "Traceback" not in other.output


@pytest.mark.parametrize("arguments, message", [
    (["--data", "no/such/file.tsv"], "no such file"),
    (["--generator", "experiments/nothing.py"], "does not exist"),
    (["--sparse-share", "1.5"], "1.5"),
    (["--keep", "0"], "0"),
    (["--config.seed=3"], "sets this key itself"),
    (["--config.train.no_such_key=1"], "no_such_key"),
])
def test_bad_input_is_one_line_and_status_2(data, tmp_path, arguments, message):
    command = ["analyze", "augment", "--data", str(data), "--out", str(tmp_path / "out"), *TINY, *arguments]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
