"""Shilling attacks and bot-like users injected into a rating log, with their truth, so that anomaly
detection can be measured on real data (`stjax data attack`).

The profiles follow the recommender-security literature (Lam and Riedl, WWW 2004; Mobasher et
al., ACM TOIT 2007): each attacker pushes one target item (rated the maximum) and rates filler
items drawn at random from the catalogue (`filler`: a share of the items):

  random     filler ratings ~ N(mean, std) of all ratings
  average    filler ratings ~ N(mean_i, std_i) of each filler item's own ratings
  bandwagon  also rates the most popular items (`selected`: a share of the items) the maximum;
             filler ratings as in `random`
  bot        no target: a crawler that rates popular items one after another at a fixed period
             (`bot_period_s`), every rating the same (the log's median)

Ratings are rounded and clipped to the log's range. Attackers of the first three kinds take the
timestamps of a randomly chosen genuine user (drawn with replacement from that user's own times),
so that their timing gives nothing away: they must be found by what they rate. Deterministic per seed.
"""

from __future__ import annotations

import numpy as np

from stjax.data.table import InteractionLog, make_log

KINDS = ("random", "average", "bandwagon", "bot")


class AttackError(ValueError):
    """Attacks that cannot be injected into this log (a user error)."""


def inject(log: InteractionLog, kinds=KINDS, fraction: float = 0.03, filler: float = 0.05, selected: float = 0.01,
           bot_period_s: int = 60, seed: int = 0) -> tuple[InteractionLog, dict[str, str]]:
    """(the log with the attackers' events added, {attacker id: kind}); `fraction` of the genuine
    users per kind (at least one)."""
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise AttackError(f"--kinds: unknown attack {', '.join(unknown)}; expected {', '.join(KINDS)}")
    values = np.asarray(log.value, np.float64)
    if not np.isfinite(values).any():
        raise AttackError("the log has no ratings (values): shilling attacks are rating profiles")
    if not 0 < fraction <= 1 or not 0 < filler < 1 or not 0 <= selected < 1:
        raise AttackError(f"--fraction {fraction}, --filler {filler}, --selected {selected}: expected shares in (0, 1]")
    rng = np.random.default_rng(seed)
    rated = np.isfinite(values)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    mean, std = float(np.nanmean(values)), float(np.nanstd(values))
    items = np.asarray(log.item, np.int64)
    num_items = log.num_items
    counts = np.bincount(items[rated], minlength=num_items + 1).astype(float)
    sums = np.bincount(items[rated], weights=values[rated], minlength=num_items + 1)
    squares = np.bincount(items[rated], weights=values[rated] ** 2, minlength=num_items + 1)
    item_mean = np.where(counts > 0, sums / np.maximum(counts, 1), mean)
    item_std = np.where(counts > 1, np.sqrt(np.maximum(squares / np.maximum(counts, 1) - item_mean ** 2, 0)), std)
    popular = np.argsort(-counts[1:], kind="stable") + 1
    median = float(np.nanmedian(values))
    user_tokens = log.user_vocab.tokens
    item_tokens = log.item_vocab.tokens

    def rating(raw):
        return np.clip(np.round(raw), low, high)

    new_users, new_items, new_times, new_values, truth = [], [], [], [], {}
    per_kind = max(1, int(round(fraction * log.num_users)))
    filler_count = max(1, int(round(filler * num_items)))
    selected_count = max(1, int(round(selected * num_items)))
    for kind in kinds:
        # One pushed target per kind: an item with few ratings (the long tail is what attacks push).
        target = int(popular[-1 - rng.integers(0, max(1, num_items // 2))]) if kind != "bot" else 0
        for number in range(per_kind):
            name = f"attack-{kind}-{number:04d}"
            truth[name] = kind
            if kind == "bot":
                chosen = popular[:filler_count]
                scores = np.full(len(chosen), rating(median))
                begin = int(rng.integers(int(log.timestamp.min()), int(log.timestamp.max()) - bot_period_s * len(chosen)))
                times = begin + bot_period_s * np.arange(len(chosen))
            else:
                pool = np.setdiff1d(np.arange(1, num_items + 1), [target])
                chosen = rng.choice(pool, filler_count, replace=False)
                if kind == "average":
                    scores = rating(rng.normal(item_mean[chosen], item_std[chosen]))
                else:
                    scores = rating(rng.normal(mean, std, len(chosen)))
                if kind == "bandwagon":
                    top = popular[:selected_count]
                    keep = ~np.isin(chosen, top)
                    chosen = np.concatenate([top, chosen[keep]])
                    scores = np.concatenate([np.full(len(top), high), scores[keep]])
                chosen = np.concatenate([chosen, [target]])
                scores = np.concatenate([scores, [high]])
                genuine = int(rng.integers(1, log.num_users + 1))
                own = np.asarray(log.timestamp[log.user == genuine])
                times = np.sort(rng.choice(own, len(chosen), replace=True))
            order = rng.permutation(len(chosen)) if kind != "bot" else np.arange(len(chosen))
            new_users.extend([name] * len(chosen))
            new_items.extend(item_tokens[np.asarray(chosen)[order]].tolist())
            new_values.extend(np.asarray(scores)[order].tolist())
            new_times.extend(np.sort(np.asarray(times)).tolist())
    users = np.concatenate([user_tokens[log.user], np.asarray(new_users, dtype=object)])
    merged = make_log(users.tolist(), np.concatenate([item_tokens[log.item], np.asarray(new_items, dtype=object)]).tolist(),
                      np.concatenate([np.asarray(log.timestamp, np.int64), np.asarray(new_times, np.int64)]),
                      value=np.concatenate([values, np.asarray(new_values, np.float64)]), name=f"{log.name}-attacked")
    return merged.sort_by_user_time(), truth
