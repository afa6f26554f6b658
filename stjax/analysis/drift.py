"""Interest drift by time and region: how the distribution of what people consume moves from one
time window to the next, globally and per region, with bootstrap intervals.

For an interaction log, each event carries interest labels (a category, MovieLens genres, or the
H3 area of a check-in) and a region (MovieLens: the user's state; check-ins: an H3 cell; the
synthetic data: the user's region). Counts c[r, w, l] of label l in region r and window w give
distributions p[r, w] = c[r, w] / n[r, w]. Then

  drift[r, w]  = JSD(p[r, w-1], p[r, w])          (base 2, in [0, 1]; consecutive windows)
  gap[r, w]    = JSD(p[r, w], p[global, w])       (how far a region is from everyone that window)
  excess[r, w] = drift[r, w] - drift[global, w]   (a region moving more or less than the global trend)

Plug-in JSD is biased upward (sampling noise alone makes two windows look different), more so
in small cells; each estimate is therefore bias-corrected by the bootstrap, 2 x JSD - mean(JSD*),
with the basic bootstrap's 95% interval (2 x JSD - q97.5, 2 x JSD - q2.5), both clipped at 0.
The bootstrap redraws each (region, window) count vector as a multinomial of its own size and
shares (resampling events with replacement when each event has one label; for multi-genre
events an approximation). A region "diverges" in a window when its gap is larger
than sampling alone would make it: a parametric bootstrap null (the region's n events drawn from
the global distribution of that window) gives a p-value, adjusted over all (region, window) tests
by Benjamini-Hochberg; q <= 0.05 is reported (the test uses the plug-in gap on both sides, so
no correction is needed there). Cells with fewer than `min_events` events are left out (NaN).
"""

from __future__ import annotations

import numpy as np

from stjax.data.interests import GENRE_FIELDS, InterestError, interest_labels  # noqa: F401  (re-exported)

WINDOWS = {"day": 1, "week": 7}  # in days; month and quarter are calendar windows; "Nd": N days
SECONDS_PER_DAY = 86_400
class DriftError(InterestError):
    """An analysis that cannot run on these data or options (a user error)."""


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (bits) between distributions on the last axis; broadcasts."""
    p = np.asarray(p, float)
    q = np.asarray(q, float)
    m = 0.5 * (p + q)

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * np.log2(np.where(a > 0, a, 1.0) / np.where(b > 0, b, 1.0)), 0.0)
        return terms.sum(axis=-1)

    return np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0)


def window_starts(timestamps: np.ndarray, window: str) -> tuple[np.ndarray, np.ndarray]:
    """Window index int64[events] and the windows' start times (UTC seconds) for `window`: day,
    week (Monday 00:00 UTC), month, quarter (calendar) or 'Nd' (N days from the first event's UTC
    midnight)."""
    timestamps = np.asarray(timestamps, np.int64)
    if len(timestamps) == 0:
        raise DriftError("the log has no events")
    if window in ("month", "quarter"):
        months = timestamps.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
        step = 1 if window == "month" else 3
        first = months.min() // step * step
        index = (months - first) // step
        starts = (np.arange(index.max() + 1) * step + first).astype("datetime64[M]").astype("datetime64[s]")
        return index, starts.astype(np.int64)
    if window in WINDOWS:
        days = WINDOWS[window]
    elif window.endswith("d") and window[:-1].isdigit() and int(window[:-1]) > 0:
        days = int(window[:-1])
    else:
        raise DriftError(f"--window {window}: expected day, week, month, quarter or Nd (N days, e.g. 28d)")
    length = days * SECONDS_PER_DAY
    origin = timestamps.min() // SECONDS_PER_DAY * SECONDS_PER_DAY
    if window == "week":  # the Monday on or before the first event (1970-01-01 was a Thursday)
        origin -= ((origin // SECONDS_PER_DAY + 3) % 7) * SECONDS_PER_DAY
    index = (timestamps - origin) // length
    return index, origin + np.arange(index.max() + 1) * length


def _bh(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN kept)."""
    q = np.full(p_values.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p_values))
    if len(finite) == 0:
        return q
    order = finite[np.argsort(p_values[finite])]
    ranked = p_values[order] * len(finite) / np.arange(1, len(finite) + 1)
    q[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return q


def corrected(estimate: np.ndarray, samples: np.ndarray, floor: float | None = 0.0):
    """Bootstrap bias correction and the basic 95% interval: (2 t - mean t*, 2 t - q97.5, 2 t - q2.5),
    clipped below at `floor` (None: not clipped, for differences)."""
    with np.errstate(invalid="ignore"):
        low_q, high_q = np.nanpercentile(samples, 2.5, axis=0), np.nanpercentile(samples, 97.5, axis=0)
        values = (2 * estimate - np.nanmean(samples, axis=0), 2 * estimate - high_q, 2 * estimate - low_q)
    return values if floor is None else tuple(np.maximum(v, floor) for v in values)


def drift(log, interest: str = "auto", window: str = "month", min_events: int = 100, bootstrap: int = 200,
          seed: int = 0, max_regions: int = 20, area_resolution: int = 8) -> dict:
    """The drift analysis of `log` as a JSON-ready dict (see the module docstring); the
    `max_regions` largest regions are analysed, the others still count in the global curve. With
    interest=region there are no per-region curves (a region's distribution over regions is itself)."""
    if bootstrap < 20:
        raise DriftError(f"--bootstrap {bootstrap}: intervals need at least 20 resamples")
    rows, codes, labels, interest = interest_labels(log, interest, area_resolution)
    nested = interest == "area"  # a region's areas are its own: its gap to everyone is ~1 by construction
    window_index, starts = window_starts(log.timestamp, window)
    region_names = np.asarray(log.region_vocab.tokens, dtype=object)
    event_region = np.asarray(log.region, np.int64)
    known = event_region[rows] > 0
    sizes = np.bincount(event_region[event_region > 0], minlength=len(region_names))
    chosen = [int(r) for r in np.argsort(-sizes, kind="stable") if r > 0 and sizes[r] > 0][:max_regions]
    if interest == "region":
        chosen = []
    num_windows, num_labels = len(starts), len(labels)
    # counts[0] is the global distribution (every event), counts[1 + i] region chosen[i].
    counts = np.zeros((1 + len(chosen), num_windows, num_labels))
    np.add.at(counts[0], (window_index[rows], codes), 1.0)
    slot = np.full(len(region_names), -1)
    slot[chosen] = np.arange(len(chosen))
    in_chosen = known & (slot[event_region[rows]] >= 0)
    np.add.at(counts, (1 + slot[event_region[rows[in_chosen]]], window_index[rows[in_chosen]], codes[in_chosen]), 1.0)
    totals = counts.sum(axis=2)  # [G, W] labels counted (a movie with three genres counts three times)
    events = np.zeros((1 + len(chosen), num_windows))  # [G, W] events
    np.add.at(events[0], window_index, 1.0)
    event_slot = np.where(event_region > 0, slot[event_region], -1)
    np.add.at(events, (1 + event_slot[event_slot >= 0], window_index[event_slot >= 0]), 1.0)
    enough = events >= min_events
    shares = counts / np.maximum(totals, 1.0)[..., None]

    def curves(share):  # share [..., G, W, L] -> drift [..., G, W-1], gap [..., G-1, W]
        moved = js_divergence(share[..., :, :-1, :], share[..., :, 1:, :])
        gap = js_divergence(share[..., 1:, :, :], share[..., :1, :, :])
        return moved, gap

    moved, gap = curves(shares)
    moved_plugin = moved
    pair_ok = enough[:, :-1] & enough[:, 1:]
    rng = np.random.default_rng(seed)
    safe = np.where(enough[..., None], shares, 1.0 / num_labels)  # cells left out still draw (then masked)
    n = totals.astype(np.int64)
    moved_b = np.empty((bootstrap, *moved.shape))
    gap_b = np.empty((bootstrap, *gap.shape))
    null_gap = np.empty((bootstrap, *gap.shape))
    for b in range(bootstrap):  # one resample at a time: memory O(regions x windows), not x labels
        moved_b[b], gap_b[b] = curves(rng.multinomial(n, safe) / np.maximum(totals, 1.0)[..., None])
        # The null of a region that is like everyone: its n events drawn from the global shares.
        null = rng.multinomial(n[1:], np.broadcast_to(safe[:1], safe[1:].shape)) / np.maximum(totals[1:], 1.0)[..., None]
        null_gap[b] = js_divergence(null, shares[:1])
    gap_plugin = gap
    moved, moved_lo, moved_hi = corrected(moved, moved_b)
    gap, gap_lo, gap_hi = corrected(gap, gap_b)
    excess, excess_lo, excess_hi = corrected(moved_plugin[1:] - moved_plugin[:1], moved_b[:, 1:] - moved_b[:, :1],
                                             floor=None)
    p_values = (1.0 + (null_gap >= gap_plugin[None]).sum(axis=0)) / (bootstrap + 1.0)
    p_values = np.where(enough[1:] & enough[:1], p_values, np.nan)
    q_values = _bh(p_values.ravel()).reshape(p_values.shape)

    def clean(values, mask):
        return [None if not ok or not np.isfinite(v) else round(float(v), 6) for v, ok in zip(values, mask)]

    def series(g):
        out = {"events": events[g].astype(int).tolist(), "labels_counted": totals[g].astype(int).tolist(),
               "drift": clean(moved[g], pair_ok[g]), "drift_low": clean(moved_lo[g], pair_ok[g]),
               "drift_high": clean(moved_hi[g], pair_ok[g]),
               "top_labels": [[labels[i] for i in np.argsort(-shares[g, w], kind="stable")[:3]] if enough[g, w] else []
                              for w in range(num_windows)]}
        if g > 0:
            ok_gap = enough[g] & enough[0] & (not nested)
            ok_excess = pair_ok[g] & pair_ok[0]
            out |= {"gap": clean(gap[g - 1], ok_gap), "gap_low": clean(gap_lo[g - 1], ok_gap),
                    "gap_high": clean(gap_hi[g - 1], ok_gap), "gap_q": clean(q_values[g - 1], ok_gap),
                    "excess": clean(excess[g - 1], ok_excess), "excess_low": clean(excess_lo[g - 1], ok_excess),
                    "excess_high": clean(excess_hi[g - 1], ok_excess)}
            both = ok_excess & np.isfinite(moved[g]) & np.isfinite(moved[0])
            out["trend_correlation"] = (round(float(np.corrcoef(moved[g][both], moved[0][both])[0, 1]), 4)
                                        if both.sum() >= 3 and moved[g][both].std() > 0 and moved[0][both].std() > 0
                                        else None)
        return out

    regions = {str(region_names[r]): series(1 + i) for i, r in enumerate(chosen)}
    diverging = []
    for i, r in enumerate(chosen if not nested else []):
        for w in np.flatnonzero(np.nan_to_num(q_values[i], nan=1.0) <= 0.05):
            diverging.append({"region": str(region_names[r]), "window": int(w), "gap": round(float(gap[i, w]), 6),
                              "q": round(float(q_values[i, w]), 6)})
    diverging.sort(key=lambda entry: (-entry["gap"], entry["region"], entry["window"]))
    moving_more = []
    for name, values in regions.items():
        for w, (low, value) in enumerate(zip(values["excess_low"], values["excess"])):
            if low is not None and low > 0:
                moving_more.append({"region": name, "step": w + 1, "excess": value, "excess_low": low})
    moving_more.sort(key=lambda entry: (-entry["excess"], entry["region"], entry["step"]))
    return {
        "analysis": "drift", "estimate": "bootstrap bias-corrected JSD, basic 95% interval", "data": getattr(log, "name", ""), "interest": interest,
        "area_resolution": area_resolution if interest == "area" else None, "window": window,
        "labels": labels, "window_starts": [int(s) for s in starts], "events": int(len(log)),
        "label_events": int(len(rows)), "events_without_region": int((event_region == 0).sum()),
        "regions_analysed": len(chosen), "regions_total": int((sizes > 0).sum()), "min_events": min_events,
        "bootstrap": bootstrap, "seed": seed,
        "gap_tested": not nested,
        "global": series(0), "regions": regions, "diverging": diverging, "moving_more_than_global": moving_more,
        "method": ("Jensen-Shannon divergence (bits) between consecutive windows, bias-corrected by the bootstrap "
                   f"with its basic 95% interval ({bootstrap} multinomial resamples per cell); gap to the global distribution tested against "
                   "a parametric bootstrap null, Benjamini-Hochberg q <= 0.05; cells under "
                   f"{min_events} events left out"),
    }


def vector_movement(snapshots: list[tuple[str, np.ndarray, np.ndarray]], user_regions: dict[str, str] | None = None,
                    bootstrap: int = 200, seed: int = 0, top: int = 10) -> dict:
    """How far learned user vectors move between consecutive snapshots (`stjax export` of models
    trained on successive temporal splits, or of a run before and after `stjax update`).

    snapshots: (name, original user ids object[U], vectors float[U, D]) in time order. Two
    trainings give vectors in arbitrary rotations of one another, so each pair is aligned first:
    rows scaled to unit length, then the orthogonal R minimising ||A R - B|| over the users both
    snapshots have (orthogonal Procrustes; `scipy.linalg.orthogonal_procrustes`). A user's
    movement is the cosine distance 1 - cos(a R, b), in [0, 2]; reported as the mean over users
    with a bootstrap 95% percentile interval (users resampled), per region (user_regions: a user's
    region, e.g. where most of their events are), and the users who moved most.
    """
    from scipy.linalg import orthogonal_procrustes

    if len(snapshots) < 2:
        raise DriftError("--vectors: give two or more snapshots (in time order) to measure movement")
    rng = np.random.default_rng(seed)

    def interval(values: np.ndarray) -> tuple[float, float]:
        if len(values) < 2:
            return float("nan"), float("nan")
        means = np.array([values[rng.integers(0, len(values), len(values))].mean() for _ in range(bootstrap)])
        return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))

    steps = []
    for (name_a, ids_a, a), (name_b, ids_b, b) in zip(snapshots[:-1], snapshots[1:]):
        if a.shape[1] != b.shape[1]:
            raise DriftError(f"--vectors: {name_a} has {a.shape[1]} dimensions and {name_b} {b.shape[1]}; "
                             "snapshots of one model are needed")
        position = {str(user): index for index, user in enumerate(ids_b)}
        common = [(index, position[str(user)]) for index, user in enumerate(ids_a) if str(user) in position]
        if len(common) < a.shape[1] + 1:
            raise DriftError(f"--vectors: {name_a} and {name_b} share {len(common)} users, too few to align "
                             f"{a.shape[1]}-dimensional vectors")
        rows_a, rows_b = (np.asarray(side) for side in zip(*common))
        unit = lambda m: m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)  # noqa: E731
        left, right = unit(np.asarray(a, np.float64)[rows_a]), unit(np.asarray(b, np.float64)[rows_b])
        rotation, _ = orthogonal_procrustes(left, right)
        moved = 1.0 - np.sum(unit(left @ rotation) * right, axis=1)
        users = np.asarray(ids_a, dtype=object)[rows_a]
        low, high = interval(moved)
        step = {"from": name_a, "to": name_b, "users": len(users), "mean": round(float(moved.mean()), 6),
                "low": round(low, 6), "high": round(high, 6), "median": round(float(np.median(moved)), 6),
                "unaligned_mean": round(float((1.0 - np.sum(left * right, axis=1)).mean()), 6),
                "top_movers": [{"user": str(users[i]), "movement": round(float(moved[i]), 6),
                                "region": (user_regions or {}).get(str(users[i]), "")}
                               for i in np.argsort(-moved, kind="stable")[:top]]}
        if user_regions:
            region_of = np.asarray([user_regions.get(str(user), "") for user in users], dtype=object)
            regions = {}
            for region in sorted(set(region_of) - {""}):
                values = moved[region_of == region]
                low, high = interval(values)
                regions[str(region)] = {"users": int(len(values)), "mean": round(float(values.mean()), 6),
                                        "low": round(low, 6), "high": round(high, 6)}
            step["regions"] = regions
            step["regions_moving_more"] = sorted(
                (name for name, entry in regions.items() if np.isfinite(entry["low"]) and entry["low"] > step["high"]),
                key=lambda name: -regions[name]["mean"])
        steps.append(step)
    return {"snapshots": [name for name, _, _ in snapshots], "bootstrap": bootstrap, "steps": steps,
            "method": "unit rows aligned by orthogonal Procrustes over the shared users; movement = cosine distance "
                      "between a user's aligned vectors; bootstrap 95% percentile intervals of the mean (users "
                      "resampled); a region 'moves more' when its interval lies above everyone's"}


def user_regions(log) -> dict[str, str]:
    """Each user's region: the region of most of their events (ties: the lowest region code)."""
    region = np.asarray(log.region, np.int64)
    known = region > 0
    if not known.any():
        return {}
    users = np.asarray(log.user, np.int64)[known]
    pairs, counts = np.unique(np.stack([users, region[known]], axis=1), axis=0, return_counts=True)
    order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))  # per user: most events first, then the lowest code
    pairs = pairs[order]
    first = np.concatenate([[True], pairs[1:, 0] != pairs[:-1, 0]])
    tokens, names = log.user_vocab.tokens, log.region_vocab.tokens
    return {str(tokens[u]): str(names[r]) for u, r in pairs[first]}
