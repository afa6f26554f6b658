"""Train / validation / test splits of a log sorted by (user, time).

A split is a label per event (`TRAIN`, `VALID`, `TEST`) on the sorted log, so that every
evaluation target keeps its full history: a test target's history is every earlier event
of its user, validation event included (the RecBole `LS` + `TO` protocol).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stjax.data.table import InteractionLog

TRAIN, VALID, TEST = 0, 1, 2


@dataclasses.dataclass
class Split:
    """log: sorted by (user, time); part: int8[events] in {TRAIN, VALID, TEST}."""

    log: InteractionLog
    part: np.ndarray
    method: str

    def counts(self) -> dict[str, int]:
        return {
            "train": int((self.part == TRAIN).sum()),
            "valid": int((self.part == VALID).sum()),
            "test": int((self.part == TEST).sum()),
        }

    def users_in(self, part: int) -> np.ndarray:
        return np.unique(self.log.user[self.part == part])


def _check_sorted(log: InteractionLog) -> None:
    order_ok = np.all((np.diff(log.user) > 0) | ((np.diff(log.user) == 0) & (np.diff(log.timestamp) >= 0)))
    if not order_ok:
        raise ValueError("the log must be sorted by (user, time); call log.sort_by_user_time()")


def leave_one_out(log: InteractionLog) -> Split:
    """Per user: last event -> test, second to last -> validation, the rest -> train.

    Users with 2 events get train + test; users with 1 event only train.
    """
    _check_sorted(log)
    n = len(log)
    part = np.full(n, TRAIN, dtype=np.int8)
    if n == 0:
        return Split(log, part, "leave_one_out")
    is_last = np.ones(n, dtype=bool)
    is_last[:-1] = log.user[1:] != log.user[:-1]
    counts = np.bincount(log.user, minlength=len(log.user_vocab))[log.user]
    last = np.flatnonzero(is_last)
    part[last[counts[last] >= 2]] = TEST
    second = last - 1
    part[second[counts[last] >= 3]] = VALID
    return Split(log, part, "leave_one_out")


def temporal(log: InteractionLog, valid_start: int | None = None, test_start: int | None = None,
             valid_fraction: float = 0.1, test_fraction: float = 0.1) -> Split:
    """Global time cut-offs: t < valid_start -> train, [valid_start, test_start) -> valid, rest -> test.

    Without explicit cut-offs they are the time quantiles leaving the given fractions.
    """
    _check_sorted(log)
    if test_start is None:
        test_start = int(np.quantile(log.timestamp, 1 - test_fraction))
    if valid_start is None:
        valid_start = int(np.quantile(log.timestamp, 1 - test_fraction - valid_fraction))
    if valid_start > test_start:
        raise ValueError(f"valid_start {valid_start} is after test_start {test_start}")
    part = np.full(len(log), TRAIN, dtype=np.int8)
    part[log.timestamp >= valid_start] = VALID
    part[log.timestamp >= test_start] = TEST
    split = Split(log, part, "temporal")
    split.valid_start, split.test_start = valid_start, test_start
    return split


def held_out_users(log: InteractionLog, valid_fraction: float = 0.1, test_fraction: float = 0.1,
                   seed: int = 0, valid_users: int = 0, test_users: int = 0) -> Split:
    """Whole users go to train, validation or test (for Mult-VAE style models): the given numbers
    of users (valid_users, test_users; Mult-VAE on ML-1M: 600 and 600), or the fractions."""
    _check_sorted(log)
    users = np.unique(log.user)
    rng = np.random.default_rng(seed)
    order = rng.permutation(users)
    num_test = int(test_users) or int(round(len(users) * test_fraction))
    num_valid = int(valid_users) or int(round(len(users) * valid_fraction))
    if num_test + num_valid >= len(users):
        raise ValueError(f"held_out_users: {num_valid} validation and {num_test} test users leave no training "
                         f"user of {len(users)}")
    part_of_user = np.zeros(len(log.user_vocab), dtype=np.int8)
    part_of_user[order[:num_test]] = TEST
    part_of_user[order[num_test:num_test + num_valid]] = VALID
    return Split(log, part_of_user[log.user], "held_out_users")


def make_split(log: InteractionLog, method: str = "leave_one_out", **kwargs) -> Split:
    methods = {"leave_one_out": leave_one_out, "temporal": temporal, "held_out_users": held_out_users}
    if method not in methods:
        raise ValueError(f"unknown split {method!r}; expected one of {', '.join(methods)}")
    return methods[method](log, **kwargs)
