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

WINDOWS = {"day": 1, "week": 7}  # in days; month and quarter are calendar windows; "Nd": N days
SECONDS_PER_DAY = 86_400
# Item genre fields and their separators: GroupLens' movies.dat ('|'), RecBole's atomic files
# (token_seq, space-separated: ml-1m's `genre`, ml-100k's `class`).
GENRE_FIELDS = {"genres": "|", "genre": None, "class": None}


class DriftError(ValueError):
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


def interest_labels(log, interest: str, area_resolution: int = 8) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """(event rows, label codes, label names, the interest used) — one pair per (event, label);
    `auto` takes genres, else item categories, else visited areas (H3 cells of `area_resolution`)
    when events have coordinates, else the event's region."""
    items = log.items or {}
    genres = next((key for key in GENRE_FIELDS if key in items), None)
    located = bool(np.isfinite(np.asarray(log.latitude, float)).any())
    if interest == "auto":
        interest = "genre" if genres else "category" if "category" in items else "area" if located else "region"
    if interest == "area":
        if not located:
            raise DriftError("--interest area: these events have no coordinates")
        from stjax.data.geo import h3_cells

        cells = h3_cells(log.latitude, log.longitude, area_resolution)
        rows = np.flatnonzero(cells != "")
        names, codes = np.unique(cells[rows].astype(str), return_inverse=True)
        return rows, codes.astype(np.int64), [str(name) for name in names], interest
    if interest == "genre":
        if genres is None:
            raise DriftError("--interest genre: these data have no item genres (MovieLens has them)")
        separator = GENRE_FIELDS[genres]
        per_item = [[g for g in str(value).split(separator) if g] if value else [] for value in items[genres]]
    elif interest == "category":
        if "category" not in items:
            raise DriftError("--interest category: these data have no item categories")
        per_item = [[str(value)] if value else [] for value in items["category"]]
    elif interest == "region":
        names = np.asarray(log.region_vocab.tokens, dtype=object)
        rows = np.flatnonzero(log.region > 0)
        return rows, np.asarray(log.region[rows], np.int64) - 1, [str(name) for name in names[1:]], interest
    else:
        raise DriftError(f"--interest {interest}: expected auto, genre, category, area or region")
    names = sorted({label for labels in per_item for label in labels})
    code = {name: index for index, name in enumerate(names)}
    item_rows, item_codes = [], []
    for item, labels in enumerate(per_item):
        for label in labels:
            item_rows.append(item)
            item_codes.append(code[label])
    item_rows, item_codes = np.asarray(item_rows, np.int64), np.asarray(item_codes, np.int64)
    # Events x their item's labels: sort pairs by item, then expand each event by its item's labels.
    order = np.argsort(item_rows, kind="stable")
    item_rows, item_codes = item_rows[order], item_codes[order]
    first = np.searchsorted(item_rows, np.arange(len(per_item)))
    count = np.bincount(item_rows, minlength=len(per_item))
    event_items = np.asarray(log.item, np.int64)
    repeats = count[event_items]
    rows = np.repeat(np.arange(len(event_items)), repeats)
    offsets = np.arange(len(rows)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    codes = item_codes[first[event_items[rows]] + offsets]
    if len(names) < 2:
        raise DriftError(f"--interest {interest}: the data have {len(names)} label(s); drift needs two or more")
    return rows, codes, names, interest


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
