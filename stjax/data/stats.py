"""Summary statistics of an interaction log (`stjax data stats`) and their rich table.

Logs whose events carry their own coordinates (check-ins) also get movement statistics:
the great-circle distance between each pair of consecutive events of a user, in time
order. Logs with relative time (no known origin) show their span, never dates.
"""

from __future__ import annotations

import h3
import numpy as np

from stjax.data.geo import haversine_km
from stjax.data.table import InteractionLog
from stjax.data.validate import utc_string


def summarize(log: InteractionLog, top_regions: int = 5, relative_time: bool = False) -> dict:
    """Counts, time span, history lengths, regions and (for check-ins) consecutive distances.

    relative_time: the timestamps count seconds from an unknown origin (e.g. stan-npy); the
    first and last events are then given as such offsets, not as UTC dates.
    """
    counts = np.bincount(log.user, minlength=len(log.user_vocab))[1:]
    counts = counts[counts > 0]
    behaviour_counts = np.bincount(log.behaviour, minlength=len(log.behaviour_vocab))
    stats = {
        "name": log.name,
        "users": int(len(np.unique(log.user))),
        "items": int(len(np.unique(log.item))),
        "events": int(len(log)),
        "time": "relative" if relative_time else "UTC",
        "first_event": _moment(log.timestamp.min(), relative_time) if len(log) else None,
        "last_event": _moment(log.timestamp.max(), relative_time) if len(log) else None,
        "span_days": round(float(log.timestamp.max() - log.timestamp.min()) / 86400, 1) if len(log) else 0.0,
        "behaviours": {str(log.behaviour_vocab.tokens[i]): int(behaviour_counts[i])
                       for i in range(1, len(log.behaviour_vocab)) if behaviour_counts[i]},
    }
    cells = stats["users"] * stats["items"]
    stats["density"] = len(log) / cells if cells else 0.0
    stats["sparsity"] = 1.0 - stats["density"]
    stats["history_length"] = {
        f"p{q}": float(np.percentile(counts, q)) for q in (5, 25, 50, 75, 95)
    } | {"max": int(counts.max(initial=0)), "mean": float(counts.mean()) if len(counts) else 0.0}
    regions = np.bincount(log.region, minlength=len(log.region_vocab))
    regions[0] = 0
    top = np.argsort(-regions, kind="stable")[:top_regions]
    stats["regions"] = int((regions > 0).sum())
    stats["region_kind"] = _region_kind(log.region_vocab.tokens[1:])
    stats["top_regions"] = {str(log.region_vocab.tokens[r]): int(regions[r]) for r in top if regions[r]}
    stats["events_with_location"] = int(np.isfinite(log.latitude).sum())
    stats["events_with_region"] = int((log.region > 0).sum())
    if has_event_coordinates(log):
        stats["consecutive_km"] = _distance_summary(consecutive_distances_km(log))
    return stats


def _moment(seconds, relative_time: bool) -> str:
    return f"t = {int(seconds):,} s" if relative_time else utc_string(seconds)


def _region_kind(tokens) -> str:
    """'H3 cells, resolution r' when every region is an H3 cell; 'named regions' otherwise."""
    if len(tokens) == 0:
        return "none"
    tokens = [str(t) for t in tokens]
    if all(h3.is_valid_cell(t) for t in tokens):
        resolutions = sorted({h3.get_resolution(t) for t in tokens})
        return f"H3 cells, resolution {', '.join(map(str, resolutions))}"
    return "named regions"


def has_event_coordinates(log: InteractionLog) -> bool:
    """Whether events carry coordinates of their own (check-ins), not their user's home location."""
    return bool(np.isfinite(log.latitude).any()) and "latitude" not in log.users


def consecutive_distances_km(log: InteractionLog) -> np.ndarray:
    """float64[pairs]: haversine km between consecutive events of each user, in (user, time) order.

    Rows need not be sorted; ties in time keep their row order. Pairs with a missing
    coordinate are left out.
    """
    order = np.lexsort((log.timestamp, log.user))  # [E], stable
    user = log.user[order]
    latitude = log.latitude[order].astype(np.float64)
    longitude = log.longitude[order].astype(np.float64)
    known = np.isfinite(latitude) & np.isfinite(longitude)
    pair = (user[1:] == user[:-1]) & known[1:] & known[:-1]  # [E - 1]: event e -> e + 1
    return haversine_km(latitude[:-1][pair], longitude[:-1][pair], latitude[1:][pair], longitude[1:][pair])


def _distance_summary(distances: np.ndarray) -> dict:
    if len(distances) == 0:
        return {"pairs": 0}
    p50, p90 = np.percentile(distances, [50, 90])
    return {"pairs": int(len(distances)), "p50": round(float(p50), 3), "p90": round(float(p90), 3),
            "max": round(float(distances.max()), 3), "mean": round(float(distances.mean()), 3),
            "zero_share": round(float((distances == 0).mean()), 4)}


def stats_table(stats: dict, report: dict | None = None):
    from rich.table import Table

    table = Table(title=f"data report: {stats['name']}", show_header=True, header_style="bold")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_row("users", f"{stats['users']:,}")
    table.add_row("items", f"{stats['items']:,}")
    table.add_row("events", f"{stats['events']:,}")
    span = f"{stats['first_event']} .. {stats['last_event']} ({stats['span_days']} days)"
    if stats["time"] == "UTC":
        table.add_row("time span", span)
    else:
        table.add_row("time span (relative time)", span)
        table.add_row("time origin", "unknown")
    for name, count in stats["behaviours"].items():
        table.add_row(f"events: {name}", f"{count:,}")
    table.add_row("sparsity", f"{stats['sparsity']:.4%}")
    h = stats["history_length"]
    table.add_row("history length p5/p25/p50/p75/p95/max",
                  f"{h['p5']:.0f} / {h['p25']:.0f} / {h['p50']:.0f} / {h['p75']:.0f} / {h['p95']:.0f} / {h['max']}")
    table.add_row("events with location", f"{stats['events_with_location']:,}")
    table.add_row("events with region", f"{stats['events_with_region']:,}")
    if stats["regions"]:
        table.add_row(f"regions ({stats['region_kind']})", f"{stats['regions']:,}")
    for region, count in stats["top_regions"].items():
        table.add_row(f"region {region}", f"{count:,}")
    distances = stats.get("consecutive_km")
    if distances and distances["pairs"]:
        table.add_row("consecutive pairs (same user)", f"{distances['pairs']:,}")
        table.add_row("consecutive km p50/p90/max",
                      f"{distances['p50']:.2f} / {distances['p90']:.2f} / {distances['max']:.2f}")
        table.add_row("consecutive km mean / share at 0 km", f"{distances['mean']:.2f} / {distances['zero_share']:.1%}")
    if report:
        table.add_row("rows read", f"{report['rows_read']:,}")
        table.add_row("rows kept", f"{report['kept']:,}")
        for kind, count in report["dropped"].items():
            table.add_row(f"dropped: {kind}", f"{count:,}")
        for kind, count in report["repaired"].items():
            label = "note" if kind == "exact_duplicate_rows" else "repaired/unmatched"
            table.add_row(f"{label}: {kind}", f"{count:,}")
    return table
