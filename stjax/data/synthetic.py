"""The embedded default data set: a synthetic spatio-temporal interaction log with its truth.

Users live in regions; items have a category and a location. What a user consumes mixes a
personal taste with a regional interest that drifts over time (differently per region),
follows item-to-item successions (a sequential signal), copies items from the users they
follow (a planted influence graph), and is timed with daily and weekly rhythms. A few users
are anomalous: bursts of activity or bot-like regularity. `generate` returns the log and
the ground truth, so later work can test that models recover it. Deterministic per seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stjax.data.table import InteractionLog, Vocab, make_log

DAY = 86_400
WEEK = 7 * DAY
# Relative activity per hour of day (evening peak) and per weekday (Monday first; weekend peak).
HOURLY = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 7, 8, 7, 6, 6, 7, 9, 11, 13, 14, 12, 8, 4], float)
WEEKDAY = np.array([0.85, 0.85, 0.9, 0.9, 1.0, 1.35, 1.3])
BEHAVIOURS = ("view", "click", "purchase")
BEHAVIOUR_P = np.array([0.65, 0.27, 0.08])


@dataclasses.dataclass
class SyntheticConfig:
    num_users: int = 1000
    num_items: int = 1000
    num_events: int = 100_000
    num_regions: int = 8
    num_categories: int = 12
    num_windows: int = 13  # drift windows over the span (4 weeks each by default)
    span_days: int = 364
    start: int = 1_672_531_200  # 2023-01-01 00:00:00 UTC
    follow_probability: float = 0.35  # next item is the successor of the previous one
    influence_probability: float = 0.1  # event copies an item an influencer consumed
    influencers_per_user: int = 4
    influencer_region: str = "same"  # 'same': influencers live in the user's region; 'any': anywhere
    anomalous_fraction: float = 0.02
    drift_strength: float = 2.5


@dataclasses.dataclass
class SyntheticTruth:
    """What was planted.

    drift: float64[regions, windows, categories], category probabilities per region and window
    interest: float64[regions, windows, categories], the category distribution each region's events
        were drawn from in each window: the regional drift mixed with the tastes of the region's
        users active then (before item successions, influence copies and bots change items)
    window_edges: int64[windows + 1], seconds
    user_region: int32[users + 1] (index 0 padding = -1); item_category, item_region: int32[items + 1]
    influence_senders, influence_receivers: int32[edges], dense user ids; the receiver copies the sender
    anomalous_users: int32[k] dense ids; anomaly_kind: object[k] in {'burst', 'bot'}
    successor: int32[items + 1], the item that tends to follow each item
    region_centres: float64[regions, 2] (lat, lon)
    taste: float64[users + 1, categories], each user's personal category distribution (row 0 padding)
    item_popularity: float64[items + 1], the Zipf weight that orders items inside their (category,
        region) group (an event picks the more popular end of its group more often)
    """

    drift: np.ndarray
    interest: np.ndarray
    window_edges: np.ndarray
    user_region: np.ndarray
    item_category: np.ndarray
    item_region: np.ndarray
    influence_senders: np.ndarray
    influence_receivers: np.ndarray
    anomalous_users: np.ndarray
    anomaly_kind: np.ndarray
    successor: np.ndarray
    region_centres: np.ndarray
    taste: np.ndarray | None = None
    item_popularity: np.ndarray | None = None


def _sample_rows(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One categorical draw per row of probabilities [n, k] (inverse CDF, vectorised)."""
    cdf = np.cumsum(probabilities, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(len(probabilities))[:, None]
    return np.minimum((u > cdf).sum(axis=1), probabilities.shape[1] - 1)


def generate(seed: int = 0, config: SyntheticConfig | None = None) -> tuple[InteractionLog, SyntheticTruth]:
    """A log of about `num_events` events and the truth behind it. See the module docstring."""
    c = config or SyntheticConfig()
    rng = np.random.default_rng(seed)
    R, C, W = c.num_regions, c.num_categories, c.num_windows
    span = c.span_days * DAY

    # Regions: centres spread over the continental US.
    centres = np.stack([rng.uniform(30, 47, R), rng.uniform(-122, -72, R)], axis=1)
    user_region = rng.integers(0, R, c.num_users)
    home = centres[user_region] + rng.normal(0, 0.3, (c.num_users, 2))
    item_region = rng.integers(0, R, c.num_items)
    item_category = rng.integers(0, C, c.num_items)
    item_location = centres[item_region] + rng.normal(0, 0.2, (c.num_items, 2))
    # Items of the same category form successor cycles: the sequential signal.
    successor = np.empty(c.num_items, dtype=np.int64)
    for category in range(C):
        members = rng.permutation(np.flatnonzero(item_category == category))
        if len(members):
            successor[members] = np.roll(members, -1)

    # Regional interest drifts: each (region, category) has its own phase and amplitude.
    phase = rng.uniform(0, 2 * np.pi, (R, C))
    amplitude = rng.uniform(0.3, 1.0, (R, C)) * c.drift_strength
    base = rng.normal(0, 0.5, (R, C))
    window_centres = (np.arange(W) + 0.5) / W
    logits = base[:, None, :] + amplitude[:, None, :] * np.sin(2 * np.pi * window_centres[None, :, None] + phase[:, None, :])
    drift = np.exp(logits - logits.max(axis=2, keepdims=True))
    drift /= drift.sum(axis=2, keepdims=True)
    window_edges = c.start + (np.arange(W + 1) * span) // W

    # Users: activity (events per user, heavy-tailed) and a personal taste.
    activity = rng.lognormal(0, 0.8, c.num_users)
    counts = np.maximum(5, np.floor(activity / activity.sum() * c.num_events)).astype(np.int64)
    taste = rng.dirichlet(np.full(C, 0.3), c.num_users)
    num_anomalous = max(1, int(round(c.anomalous_fraction * c.num_users)))
    anomalous = np.sort(rng.choice(c.num_users, num_anomalous, replace=False))
    kinds = np.where(np.arange(num_anomalous) % 2 == 0, "burst", "bot").astype(object)

    user = np.repeat(np.arange(c.num_users), counts)
    n = len(user)
    # Times: day drawn with weekly weights, hour with the daily profile, then seconds.
    num_days = c.span_days
    start_weekday = 6  # 2023-01-01 was a Sunday
    day_weight = WEEKDAY[(np.arange(num_days) + start_weekday) % 7]
    day = rng.choice(num_days, n, p=day_weight / day_weight.sum())
    hour = rng.choice(24, n, p=HOURLY / HOURLY.sum())
    t = c.start + day * DAY + hour * 3600 + rng.integers(0, 3600, n)

    # Anomalies: bursts squeeze a user's events into two hours; bots tick at a fixed period.
    event_rank = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    for u, kind in zip(anomalous, kinds):
        rows = user == u
        k = int(rows.sum())
        begin = c.start + int(rng.integers(0, span - 2 * DAY))
        if kind == "burst":
            t[rows] = begin + rng.integers(0, 7200, k)
        else:
            t[rows] = begin + event_rank[rows] * 600
    order = np.lexsort((t, user))
    user, t = user[order], t[order]

    # Categories: half regional drift at the event's window, half personal taste.
    window = np.clip(np.searchsorted(window_edges, t, side="right") - 1, 0, W - 1)
    mixed = 0.5 * drift[user_region[user], window] + 0.5 * taste[user]
    category = _sample_rows(rng, mixed)
    interest = np.zeros((R, W, C))
    np.add.at(interest, (user_region[user], window), mixed)
    interest /= np.maximum(interest.sum(axis=2, keepdims=True), 1e-12)
    # Items: mostly from the user's region, Zipf-like popularity inside each (category, region).
    popularity = rng.zipf(1.6, c.num_items).astype(float)
    local = rng.random(n) < 0.75
    group_key = np.where(local, category * R + user_region[user], category * R + rng.integers(0, R, n))
    item_key = item_category * R + item_region
    order_items = np.lexsort((-popularity, item_key))
    sorted_keys = item_key[order_items]
    lo = np.searchsorted(sorted_keys, group_key, side="left")
    hi = np.searchsorted(sorted_keys, group_key, side="right")
    empty = hi == lo
    # Fall back to any item of the category when the (category, region) group is empty.
    cat_sorted = np.argsort(item_category, kind="stable")
    cat_keys = item_category[cat_sorted]
    clo = np.searchsorted(cat_keys, category, side="left")
    chi = np.searchsorted(cat_keys, category, side="right")
    size = np.where(empty, chi - clo, hi - lo)
    pick = np.floor(size * rng.random(n) ** 2.0).astype(np.int64)  # skewed to the popular end
    item = np.where(empty, cat_sorted[np.minimum(clo + pick, len(cat_sorted) - 1)],
                    order_items[np.minimum(lo + pick, len(order_items) - 1)])

    # Successions: with some probability an event repeats the successor of the previous item.
    same_user_prev = np.zeros(n, dtype=bool)
    same_user_prev[1:] = user[1:] == user[:-1]
    follow = same_user_prev & (rng.random(n) < c.follow_probability)
    for _ in range(8):  # chains of follows resolve in a few passes
        new_item = item.copy()
        new_item[1:][follow[1:]] = successor[item[:-1][follow[1:]]]
        if np.array_equal(new_item, item):
            break
        item = new_item

    # Influence: receivers copy an item their sender consumed shortly before.
    senders_list, receivers_list = [], []
    k = c.influencers_per_user
    influencer_matrix = np.zeros((c.num_users, k), dtype=np.int64)
    if c.influencer_region not in ("same", "any"):
        raise ValueError(f"influencer_region={c.influencer_region!r}; expected 'same' or 'any'")
    for u in range(c.num_users):
        same = np.flatnonzero(user_region == user_region[u]) if c.influencer_region == "same" else np.arange(c.num_users)
        candidates = same[same != u]
        if len(candidates) == 0:  # alone in its region: influencers come from anywhere
            candidates = np.delete(np.arange(c.num_users), u)
        chosen = rng.choice(candidates, min(k, len(candidates)), replace=False)
        senders_list.append(chosen)
        receivers_list.append(np.full(len(chosen), u))
        influencer_matrix[u] = np.resize(chosen, k)
    senders = np.concatenate(senders_list)
    receivers = np.concatenate(receivers_list)
    user_first = np.searchsorted(user, np.arange(c.num_users), side="left")
    user_end = np.searchsorted(user, np.arange(c.num_users), side="right")
    copy = rng.random(n) < c.influence_probability
    copy &= ~np.isin(user, anomalous)
    rows = np.flatnonzero(copy)
    influencer = influencer_matrix[user[rows], rng.integers(0, k, len(rows))]
    # The influencer's last event before this one.
    position = np.empty(len(rows), dtype=np.int64)
    for index, (row, v) in enumerate(zip(rows, influencer)):
        position[index] = user_first[v] + np.searchsorted(t[user_first[v]:user_end[v]], t[row]) - 1
    has = position >= user_first[influencer]
    item[rows[has]] = item[position[has]]

    # Bots cycle through three items.
    for u in anomalous[kinds == "bot"]:
        rows_u = np.flatnonzero(user == u)
        cycle = rng.choice(c.num_items, 3, replace=False)
        item[rows_u] = cycle[np.arange(len(rows_u)) % 3]

    behaviour = np.asarray(BEHAVIOURS, dtype=object)[rng.choice(3, n, p=BEHAVIOUR_P)]
    latitude = item_location[item, 0]
    longitude = item_location[item, 1]
    region_names = np.asarray([f"region-{r:02d}" for r in range(R)], dtype=object)
    user_ids = np.asarray([f"u{u:05d}" for u in range(c.num_users)], dtype=object)
    item_ids = np.asarray([f"i{i:05d}" for i in range(c.num_items)], dtype=object)
    category_names = np.asarray([f"category-{k:02d}" for k in range(C)], dtype=object)

    user_vocab = Vocab.from_tokens(user_ids)
    item_vocab = Vocab.from_tokens(item_ids)
    log = make_log(user + 1, item + 1, t, behaviour=behaviour, latitude=latitude, longitude=longitude,
                   region=region_names[user_region[user]], user_vocab=user_vocab, item_vocab=item_vocab,
                   name="synthetic")

    def padded(values, fill):
        return np.concatenate([[fill], values])

    log.users = {
        "home_region": padded(region_names[user_region], ""),
        "latitude": padded(home[:, 0], np.nan),
        "longitude": padded(home[:, 1], np.nan),
    }
    log.items = {
        "category": padded(category_names[item_category], ""),
        "latitude": padded(item_location[:, 0], np.nan),
        "longitude": padded(item_location[:, 1], np.nan),
    }
    truth = SyntheticTruth(
        drift=drift,
        interest=interest,
        window_edges=window_edges.astype(np.int64),
        user_region=padded(user_region, -1).astype(np.int32),
        item_category=padded(item_category, -1).astype(np.int32),
        item_region=padded(item_region, -1).astype(np.int32),
        influence_senders=(senders + 1).astype(np.int32),
        influence_receivers=(receivers + 1).astype(np.int32),
        anomalous_users=(anomalous + 1).astype(np.int32),
        anomaly_kind=kinds,
        successor=padded(successor + 1, 0).astype(np.int32),
        region_centres=centres,
        taste=np.concatenate([np.zeros((1, C)), taste]),
        item_popularity=padded(popularity, 0.0),
    )
    return log, truth
