"""Summary statistics of an interaction log (`stjax data stats`) and their rich table."""

from __future__ import annotations

import numpy as np

from stjax.data.table import InteractionLog
from stjax.data.validate import utc_string


def summarize(log: InteractionLog, top_regions: int = 5) -> dict:
    counts = np.bincount(log.user, minlength=len(log.user_vocab))[1:]
    counts = counts[counts > 0]
    behaviour_counts = np.bincount(log.behaviour, minlength=len(log.behaviour_vocab))
    stats = {
        "name": log.name,
        "users": int(len(np.unique(log.user))),
        "items": int(len(np.unique(log.item))),
        "events": int(len(log)),
        "first_event": utc_string(log.timestamp.min()) if len(log) else None,
        "last_event": utc_string(log.timestamp.max()) if len(log) else None,
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
    stats["top_regions"] = {str(log.region_vocab.tokens[r]): int(regions[r]) for r in top if regions[r]}
    stats["events_with_location"] = int(np.isfinite(log.latitude).sum())
    stats["events_with_region"] = int((log.region > 0).sum())
    return stats


def stats_table(stats: dict, report: dict | None = None):
    from rich.table import Table

    table = Table(title=f"data report: {stats['name']}", show_header=True, header_style="bold")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_row("users", f"{stats['users']:,}")
    table.add_row("items", f"{stats['items']:,}")
    table.add_row("events", f"{stats['events']:,}")
    table.add_row("time span", f"{stats['first_event']} .. {stats['last_event']} ({stats['span_days']} days)")
    for name, count in stats["behaviours"].items():
        table.add_row(f"events: {name}", f"{count:,}")
    table.add_row("sparsity", f"{stats['sparsity']:.4%}")
    h = stats["history_length"]
    table.add_row("history length p5/p25/p50/p75/p95/max",
                  f"{h['p5']:.0f} / {h['p25']:.0f} / {h['p50']:.0f} / {h['p75']:.0f} / {h['p95']:.0f} / {h['max']}")
    table.add_row("events with location", f"{stats['events_with_location']:,}")
    table.add_row("events with region", f"{stats['events_with_region']:,}")
    for region, count in stats["top_regions"].items():
        table.add_row(f"region {region}", f"{count:,}")
    if report:
        table.add_row("rows read", f"{report['rows_read']:,}")
        table.add_row("rows kept", f"{report['kept']:,}")
        for kind, count in report["dropped"].items():
            table.add_row(f"dropped: {kind}", f"{count:,}")
        for kind, count in report["repaired"].items():
            table.add_row(f"repaired/unmatched: {kind}", f"{count:,}")
    return table
