"""`make demo`: real data when it can be fetched (else the synthetic default), the data report."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from stjax.data.errors import DataError
from stjax.data.pipeline import prepare
from stjax.data.stats import stats_table, summarize

console = Console()


def main() -> int:
    config = {"source": "ml-100k", "data_dir": "data", "max_length": 50}
    try:
        prepared = prepare(config, log=console.print)
    except DataError as err:
        console.print(f"ml-100k unavailable ({err}); using the synthetic default data set")
        config["source"] = "synthetic"
        prepared = prepare(config, log=console.print)
    console.print(stats_table(summarize(prepared.log), prepared.report.as_dict()))
    table = Table(title="split and batches (leave-one-out by time, max length 50)")
    for column in ("train events", "valid targets", "test targets", "train sequences", "load+prepare s"):
        table.add_column(column, justify="right")
    counts = prepared.split.counts()
    table.add_row(f"{counts['train']:,}", f"{counts['valid']:,}", f"{counts['test']:,}",
                  f"{len(prepared.sequences.train['items']):,}", f"{sum(prepared.timings.values()):.2f}")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
