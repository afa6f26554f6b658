"""User profiles: kinds of users found by k-means (scikit-learn), the number of kinds chosen by the
silhouette, each kind described by what, where, when and how much its users do, and how users
move between kinds over time windows.

A user is a vector of blocks, each standardised (z per column) and divided by the square root of
its width so that every block weighs the same whatever its size:

  interest  shares of the user's events per label (genres, categories or visited areas; see
            `stjax.data.interests.interest_labels`)
  hours     shares per 4-hour block of the day (UTC; the synthetic data and MovieLens are UTC)
  weekdays  shares per weekday
  place     the mean latitude and longitude of the user's events (when the data have coordinates)
  activity  log(1 + events)

or, with `vectors`, a trained model's user vectors (`stjax export`). Over time windows, each
user active in a window is profiled on that window's events alone and assigned to the nearest
centre (behaviour vectors only: a model's vectors have no windows); `transitions[a][b]` counts
users in kind a in one window and kind b in the next.
"""

from __future__ import annotations

import numpy as np

from stjax.analysis.drift import window_starts
from stjax.data.interests import interest_labels

HOUR_BLOCKS = 6
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class ProfileError(ValueError):
    """Profiles that cannot be made from these data or options (a user error)."""


def _shares(groups: np.ndarray, values: np.ndarray, num_groups: int, width: int, weights=None) -> np.ndarray:
    counts = np.zeros((num_groups, width))
    np.add.at(counts, (groups, values), 1.0 if weights is None else weights)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12)


def behaviour_blocks(log, rows_of_events: np.ndarray, label_rows: np.ndarray, label_codes: np.ndarray,
                     num_labels: int, user_index: np.ndarray, num_users: int) -> dict[str, np.ndarray]:
    """The raw blocks (see the module docstring) of `num_users` users from the events
    `rows_of_events` (user_index[event] in 0..num_users-1 for those events) and the (event, label)
    pairs among them."""
    times = np.asarray(log.timestamp, np.int64)
    users = user_index[rows_of_events]
    blocks = {
        "interest": _shares(user_index[label_rows], label_codes, num_users, num_labels),
        "hours": _shares(users, (times[rows_of_events] // 3600 % 24) // (24 // HOUR_BLOCKS), num_users, HOUR_BLOCKS),
        "weekdays": _shares(users, (times[rows_of_events] // 86_400 + 3) % 7, num_users, 7),
        "activity": np.log1p(np.bincount(users, minlength=num_users)).astype(float)[:, None],
    }
    latitude = np.asarray(log.latitude, float)[rows_of_events]
    longitude = np.asarray(log.longitude, float)[rows_of_events]
    located = np.isfinite(latitude) & np.isfinite(longitude)
    if located.mean() > 0.5:
        count = np.maximum(np.bincount(users[located], minlength=num_users), 1)
        blocks["place"] = np.stack([np.bincount(users[located], weights=latitude[located], minlength=num_users) / count,
                                    np.bincount(users[located], weights=longitude[located], minlength=num_users) / count],
                                   axis=1)
    return blocks


def standardise(blocks: dict[str, np.ndarray], reference: dict[str, tuple] | None = None):
    """The blocks as one matrix (z per column with the reference's mean and std, / sqrt(width)),
    and the reference used (computed from these blocks when None)."""
    reference = reference or {name: (block.mean(axis=0), block.std(axis=0)) for name, block in blocks.items()}
    parts = []
    for name, block in blocks.items():
        mean, std = reference[name]
        parts.append((block - mean) / np.where(std > 0, std, 1.0) / np.sqrt(block.shape[1]))
    return np.concatenate(parts, axis=1), reference


def choose_clusters(vectors: np.ndarray, ks, seed: int = 0, sample: int = 5000):
    """k-means for each k of `ks`; the k with the largest silhouette (on a seeded sample of at most
    `sample` users). -> (model, {k: silhouette})."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    ks = [k for k in ks if 2 <= k < len(vectors)]
    if not ks:
        raise ProfileError(f"{len(vectors)} users: too few for two or more kinds")
    best, scores = None, {}
    for k in ks:
        model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(vectors)
        scores[k] = float(silhouette_score(vectors, model.labels_, sample_size=min(sample, len(vectors)),
                                           random_state=seed))
        if best is None or scores[k] > scores[best.n_clusters]:
            best = model
    return best, scores


BLOCKS = ("interest", "hours", "weekdays", "place", "activity")


def profiles(log, interest: str = "auto", ks=range(2, 11), window: str = "quarter", seed: int = 0,
             vectors: tuple[np.ndarray, np.ndarray] | None = None, area_resolution: int = 8,
             blocks: tuple[str, ...] | None = None) -> dict:
    """The profiles of `log`'s users as a JSON-ready dict. vectors: (original user ids, float[U, D])
    of a trained model (`stjax export`) instead of behaviour vectors; blocks: the behaviour blocks
    that make a user's vector (default: all the data have)."""
    label_rows, label_codes, labels, interest = interest_labels(log, interest, area_resolution)
    all_rows = np.arange(len(log))
    user_index = np.asarray(log.user, np.int64) - 1
    described_by = behaviour_blocks(log, all_rows, label_rows, label_codes, len(labels), user_index, log.num_users)
    unknown = [name for name in (blocks or ()) if name not in BLOCKS]
    missing = [name for name in (blocks or ()) if name in BLOCKS and name not in described_by]
    if unknown or missing:
        raise ProfileError(f"--blocks: {', '.join(unknown + missing)} " + ("unknown; expected " + ", ".join(BLOCKS)
                                                                          if unknown else "not in these data"))
    blocks = {name: described_by[name] for name in (blocks or described_by)}
    tokens = np.asarray(log.user_vocab.tokens[1:], dtype=object).astype(str)
    if vectors is None:
        matrix, reference = standardise(blocks)
        kept = np.arange(log.num_users)
        source = "behaviour (" + ", ".join(blocks) + ")"
    else:
        ids, values = vectors
        position = {str(user): index for index, user in enumerate(tokens)}
        matched = [(position[str(user)], row) for row, user in enumerate(ids) if str(user) in position]
        if len(matched) < 10:
            raise ProfileError(f"--vectors: only {len(matched)} of its users are in the data")
        kept = np.array([index for index, _ in matched])
        matrix = np.asarray(values, float)[[row for _, row in matched]]
        matrix = (matrix - matrix.mean(axis=0)) / np.where(matrix.std(axis=0) > 0, matrix.std(axis=0), 1.0)
        reference = None
        source = f"a model's user vectors ({matrix.shape[1]} dimensions)"
    model, silhouettes = choose_clusters(matrix, ks, seed)
    kinds = model.labels_
    overall = described_by["interest"][kept].mean(axis=0)
    region = np.asarray(log.region, np.int64)
    region_names = np.asarray(log.region_vocab.tokens, dtype=object)
    described = []
    for kind in range(model.n_clusters):
        members = kept[kinds == kind]
        share = described_by["interest"][members].mean(axis=0)
        lift = share / np.maximum(overall, 1e-12)
        events = np.isin(user_index, members)
        regions = np.bincount(region[events], minlength=len(region_names))
        regions[0] = 0
        top_regions = [(str(region_names[r]), float(regions[r] / max(regions.sum(), 1)))
                       for r in np.argsort(-regions, kind="stable")[:3] if regions[r] > 0]
        hours = described_by["hours"][members].mean(axis=0)
        days = described_by["weekdays"][members].mean(axis=0)
        described.append({
            "kind": kind, "users": int(len(members)),
            "top_interests": [{"label": labels[i], "share": round(float(share[i]), 4), "lift": round(float(lift[i]), 3)}
                              for i in np.argsort(-share, kind="stable")[:3]],
            "most_over_represented": [{"label": labels[i], "lift": round(float(lift[i]), 3)}
                                      for i in np.argsort(-lift, kind="stable")[:3]],
            "top_regions": [{"region": name, "share": round(value, 4)} for name, value in top_regions],
            "peak_hours_utc": f"{int(np.argmax(hours)) * (24 // HOUR_BLOCKS):02d}-"
                              f"{(int(np.argmax(hours)) + 1) * (24 // HOUR_BLOCKS):02d}",
            "hour_shares": np.round(hours, 4).tolist(), "peak_weekday": WEEKDAYS[int(np.argmax(days))],
            "median_events": float(np.median(np.bincount(user_index, minlength=log.num_users)[members])),
        })
    output = {"analysis": "profiles", "data": log.name, "vectors": source, "interest": interest,
              "users": int(len(kept)), "silhouette": {str(k): round(v, 4) for k, v in silhouettes.items()},
              "kinds": model.n_clusters, "profiles": described,
              "membership": {str(tokens[index]): int(kind) for index, kind in zip(kept, kinds)}}
    if vectors is None:
        output |= over_time(log, model, reference, window, label_rows, label_codes, len(labels), user_index)
    return output


def over_time(log, model, reference, window: str, label_rows, label_codes, num_labels: int,
              user_index: np.ndarray) -> dict:
    """Each window's active users assigned to the nearest centre, and the moves between windows."""
    index, starts = window_starts(log.timestamp, window)
    kinds = model.n_clusters
    label_window = index[label_rows]
    sizes, transitions, previous = [], np.zeros((kinds, kinds), np.int64), None
    for w in range(len(starts)):
        rows = np.flatnonzero(index == w)
        active = np.unique(user_index[rows])
        if len(active) == 0:
            sizes.append([0] * kinds)
            previous = None
            continue
        local = np.full(log.num_users, -1)
        local[active] = np.arange(len(active))
        pairs = label_window == w
        blocks = behaviour_blocks(log, rows, label_rows[pairs], label_codes[pairs], num_labels, local[user_index],
                                  len(active))
        matrix, _ = standardise({name: blocks[name] for name in reference}, reference)
        assigned = model.predict(matrix)
        sizes.append(np.bincount(assigned, minlength=kinds).tolist())
        current = dict(zip(active.tolist(), assigned.tolist()))
        if previous is not None:
            for user, kind in current.items():
                if user in previous:
                    transitions[previous[user], kind] += 1
        previous = current
    moved = transitions.sum() - np.trace(transitions)
    return {"window": window, "window_starts": [int(s) for s in starts], "kind_sizes_by_window": sizes,
            "transitions": transitions.tolist(),
            "stay_rate": round(float(np.trace(transitions) / max(transitions.sum(), 1)), 4), "moves": int(moved)}
