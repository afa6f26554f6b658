"""Cleaning steps on an interaction log: de-duplication, k-core, minimum history, sorting.

Each step returns a new log and records what it removed in a `RepairReport`, so the
counts of the whole pipeline still add up to the rows read.
"""

from __future__ import annotations

import numpy as np

from stjax.data.errors import RepairReport
from stjax.data.table import InteractionLog


def deduplicate(log: InteractionLog, report: RepairReport | None = None,
                keys=("user", "item", "timestamp", "behaviour")) -> InteractionLog:
    """Keeps the first of events equal on `keys`."""
    stacked = np.stack([getattr(log, k).astype(np.int64) for k in keys], axis=1)
    _, first = np.unique(stacked, axis=0, return_index=True)
    keep = np.sort(first)
    if report is not None:
        report.drop("duplicate_event", len(log) - len(keep))
    return log.select(keep)


def k_core(log: InteractionLog, user_k: int = 5, item_k: int = 5, report: RepairReport | None = None) -> InteractionLog:
    """Iterates until every user has >= user_k events and every item >= item_k (a fixpoint)."""
    keep = np.ones(len(log), dtype=bool)
    while True:
        user_counts = np.bincount(log.user[keep], minlength=len(log.user_vocab))
        item_counts = np.bincount(log.item[keep], minlength=len(log.item_vocab))
        bad = keep & ((user_counts[log.user] < user_k) | (item_counts[log.item] < item_k))
        if not bad.any():
            break
        keep &= ~bad
    if report is not None:
        report.drop("k_core", int((~keep).sum()))
    return log.select(keep)


def min_history(log: InteractionLog, length: int, report: RepairReport | None = None) -> InteractionLog:
    """Drops users with fewer than `length` events."""
    counts = np.bincount(log.user, minlength=len(log.user_vocab))
    keep = counts[log.user] >= length
    if report is not None:
        report.drop("short_history", int((~keep).sum()))
    return log.select(keep)


def keep_min_value(log: InteractionLog, threshold: float, report: RepairReport | None = None) -> InteractionLog:
    """Keeps events whose value (rating) is >= threshold: ratings >= 4 as positives (Mult-VAE's
    protocol). A log without values cannot be filtered: ValueError."""
    if np.isnan(log.value).all():
        raise ValueError(f"data.min_value={threshold} keeps events by their value, but the log has no value column")
    keep = log.value >= threshold  # NaN compares False: an event without a value is dropped
    if report is not None:
        report.drop("below_min_value", int((~keep).sum()))
    return log.select(keep)


def preprocess(log: InteractionLog, *, dedup: bool = False, user_k: int = 0, item_k: int = 0,
               min_length: int = 0, min_value: float = 0.0, report: RepairReport | None = None) -> InteractionLog:
    """The standard pipeline: min value -> dedup -> k-core -> min history -> compact ids -> sort by
    (user, time). min_value 0 keeps every event."""
    if min_value:
        log = keep_min_value(log, min_value, report)
    if dedup:
        log = deduplicate(log, report)
    if user_k or item_k:
        log = k_core(log, user_k, item_k, report)
    if min_length:
        log = min_history(log, min_length, report)
    return log.compact().sort_by_user_time()
