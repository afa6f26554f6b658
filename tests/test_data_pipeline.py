"""k-core, splits, batching and the generator against brute-force references."""

import numpy as np
import pytest

from stjax.data import BatchIterator, build_sequences, make_log, make_split
from stjax.data.batching import eval_batches
from stjax.data.errors import RepairReport
from stjax.data.preprocess import deduplicate, k_core, preprocess
from stjax.data.splits import TEST, TRAIN, VALID
from stjax.data.synthetic import SyntheticConfig, generate


def random_log(seed=0, n=400, users=23, items=31):
    rng = np.random.default_rng(seed)
    return make_log(rng.integers(0, users, n), rng.integers(0, items, n), rng.integers(0, 1000, n))


def brute_force_k_core(pairs, user_k, item_k):
    pairs = list(pairs)
    while True:
        users, items = {}, {}
        for u, i in pairs:
            users[u] = users.get(u, 0) + 1
            items[i] = items.get(i, 0) + 1
        kept = [(u, i) for u, i in pairs if users[u] >= user_k and items[i] >= item_k]
        if len(kept) == len(pairs):
            return kept
        pairs = kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_core_equals_brute_force_fixpoint(seed):
    log = random_log(seed)
    report = RepairReport(rows_read=len(log), kept=len(log))
    out = k_core(log, 5, 4, report)
    expected = brute_force_k_core(zip(log.user.tolist(), log.item.tolist()), 5, 4)
    assert list(zip(out.user.tolist(), out.item.tolist())) == expected
    assert report.kept + report.total_dropped == report.rows_read


def test_deduplicate_keeps_first():
    log = make_log(["a", "a", "a", "b"], ["x", "x", "y", "x"], [1, 1, 1, 2], behaviour=["v", "v", "v", "v"])
    out = deduplicate(log)
    assert len(out) == 3
    np.testing.assert_array_equal(out.item_vocab.decode(out.item), ["x", "y", "x"])


def reference_loo(log):
    """Plain Python: per user, events sorted by (time, file order); last -> test, then valid."""
    by_user = {}
    for row in range(len(log)):
        by_user.setdefault(int(log.user[row]), []).append(row)
    part = {}
    for rows in by_user.values():
        rows = sorted(rows, key=lambda r: (log.timestamp[r], r))
        for r in rows:
            part[r] = TRAIN
        if len(rows) >= 2:
            part[rows[-1]] = TEST
        if len(rows) >= 3:
            part[rows[-2]] = VALID
    return part


def test_leave_one_out_equals_reference():
    log = preprocess(random_log(3))
    split = make_split(log, "leave_one_out")
    expected = reference_loo(log)
    assert [expected[r] for r in range(len(log))] == split.part.tolist()
    # No leakage: every test event is its user's latest; every test user has history.
    for u in split.users_in(TEST):
        rows = np.flatnonzero(log.user == u)
        assert split.part[rows[-1]] == TEST
        assert (split.part[rows[:-1]] != TEST).all() and len(rows) >= 2


def test_temporal_split_has_no_training_event_after_cutoff():
    log = preprocess(random_log(4))
    split = make_split(log, "temporal", valid_fraction=0.2, test_fraction=0.1)
    train_times = log.timestamp[split.part == TRAIN]
    assert train_times.max() < split.valid_start
    assert log.timestamp[split.part == TEST].min() >= split.test_start
    assert sum(split.counts().values()) == len(log)


def test_held_out_users_split_is_by_user_and_deterministic():
    log = preprocess(random_log(5))
    a = make_split(log, "held_out_users", seed=7)
    b = make_split(log, "held_out_users", seed=7)
    np.testing.assert_array_equal(a.part, b.part)
    for u in np.unique(log.user):
        assert len(set(a.part[log.user == u].tolist())) == 1


def test_sequences_padding_and_targets_exact():
    # One user, 6 events: items 1..6 by time. LOO -> train 1..4, valid 5, test 6.
    log = preprocess(make_log(["u"] * 6, ["a", "b", "c", "d", "e", "f"], [10, 20, 30, 40, 50, 60]))
    data = build_sequences(make_split(log), max_length=5)
    a, b, c, d, e, f = range(1, 7)
    np.testing.assert_array_equal(data.train["items"], [[0, 0, a, b, c]])
    np.testing.assert_array_equal(data.train["targets"], [[0, 0, b, c, d]])
    np.testing.assert_array_equal(data.train["timestamps"], [[0, 0, 0, 10, 20]])
    np.testing.assert_array_equal(data.valid["items"], [[0, a, b, c, d]])
    np.testing.assert_array_equal(data.valid["targets"], [[e]])
    np.testing.assert_array_equal(data.test["items"], [[a, b, c, d, e]])
    np.testing.assert_array_equal(data.test["targets"], [[f]])
    assert sorted(data.test["exclude"][0].tolist()) == [a, b, c, d, e]


def test_sequences_window_all_covers_every_training_target():
    log = preprocess(random_log(6, n=600, users=5, items=50))
    split = make_split(log)
    data = build_sequences(split, max_length=7, window="all")
    targets = data.train["targets"]
    assert (targets > 0).sum() == int((split.part == TRAIN).sum()) - len(np.unique(log.user[split.part == TRAIN]))


def test_iterator_resume_yields_identical_batches():
    arrays = {"x": np.arange(23), "y": np.arange(23) * 2}
    iterator = BatchIterator(arrays, batch_size=5, seed=3)
    first = [next(iterator) for _ in range(7)]
    state = iterator.get_state()
    after = [next(iterator) for _ in range(6)]
    resumed = BatchIterator(arrays, batch_size=5, seed=3)
    resumed.set_state(state)
    for a, b in zip(after, [next(resumed) for _ in range(6)]):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # Each epoch covers every example once; the last batch is padded with weight 0.
    epoch = first[:5]
    seen = np.concatenate([b["x"][b["weights"] > 0] for b in epoch])
    assert sorted(seen.tolist()) == list(range(23))
    assert epoch[-1]["weights"].tolist() == [1, 1, 1, 0, 0]


def test_eval_batches_static_shapes():
    examples = {"targets": np.arange(7), "items": np.ones((7, 3), np.int32)}
    batches = list(eval_batches(examples, 4))
    assert [b["items"].shape for b in batches] == [(4, 3), (4, 3)]
    assert batches[1]["weights"].tolist() == [1, 1, 1, 0]


def test_generator_deterministic_and_truth_shapes():
    config = SyntheticConfig(num_users=200, num_items=150, num_events=8000)
    log_a, truth = generate(11, config)
    log_b, _ = generate(11, config)
    np.testing.assert_array_equal(log_a.item, log_b.item)
    np.testing.assert_array_equal(log_a.timestamp, log_b.timestamp)
    assert truth.drift.shape == (8, 13, 12)
    np.testing.assert_allclose(truth.drift.sum(axis=2), 1.0)
    assert truth.user_region.shape == (201,) and truth.item_category.shape == (151,)
    assert len(truth.influence_senders) == len(truth.influence_receivers) == 200 * 4
    assert (truth.influence_senders != truth.influence_receivers).all()
    assert len(truth.anomalous_users) == 4 and set(truth.anomaly_kind) == {"burst", "bot"}
    assert log_a.num_users == 200 and abs(len(log_a) - 8000) < 1500
    # Weekly rhythm: weekend days carry more events than weekdays.
    weekday = ((log_a.timestamp // 86400) + 3) % 7  # 1970-01-01 was a Thursday -> Monday = 0
    counts = np.bincount(weekday, minlength=7)
    assert counts[5:].mean() > counts[:5].mean()
    # Bots tick at a fixed period.
    bot = truth.anomalous_users[truth.anomaly_kind == "bot"][0]
    gaps = np.diff(np.sort(log_a.timestamp[log_a.user == bot]))
    assert set(gaps.tolist()) == {600}
