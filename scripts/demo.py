"""`make demo`: data report, then SASRec trained, evaluated (full ranking) and recommending.

Uses ml-100k when it can be fetched (GroupLens, else the copy in the recbole wheel), else
the synthetic default data set. About 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stjax.config import load_config
from stjax.data.errors import DataError
from stjax.data.pipeline import prepare
from stjax.data.stats import stats_table, summarize

console = Console(soft_wrap=True)
ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    source = "ml-100k"
    try:
        prepared = prepare({"source": source, "data_dir": str(ROOT / "data"), "max_length": 50}, log=console.print)
    except DataError as err:
        console.print(f"ml-100k unavailable ({err}); using the synthetic default data set")
        source = "synthetic"
        prepared = prepare({"source": source, "max_length": 50}, log=console.print)
    console.print(stats_table(summarize(prepared.log), prepared.report.as_dict()))
    counts = prepared.split.counts()
    table = Table(title="leave-one-out split, sequences of length 50")
    for column in ("train events", "valid targets", "test targets", "train sequences"):
        table.add_column(column, justify="right")
    table.add_row(f"{counts['train']:,}", f"{counts['valid']:,}", f"{counts['test']:,}",
                  f"{len(prepared.sequences.train['items']):,}")
    console.print(table)

    from stjax.cli import _metrics_table
    from stjax.train import train_and_evaluate

    config = load_config(str(ROOT / "experiments" / "sasrec_ml100k.py"), [
        f"--config.data.source={source}", f"--config.data.data_dir={ROOT / 'data'}",
        "--config.train.num_epochs=100", "--config.train.eval_every_epochs=25"])
    workdir = Path(tempfile.mkdtemp(prefix="stjax-demo-"))
    console.print(f"training SASRec on {source} in {workdir} (100 epochs)")
    results = train_and_evaluate(config, workdir, log=console.print, progress=sys.stdout.isatty())
    console.print(_metrics_table(results, f"SASRec on {source}: best step {results['best_step']}, full ranking"))
    timings = results["timings"]
    console.print(f"training {timings['train_s']:.1f} s ({timings['train_targets_per_s']:,.0f} targets/s), "
                  f"compile {timings['compile_s']:.1f} s, evaluation {timings['eval_s']:.1f} s")

    from stjax.serving.recommend import recommend_rows
    from stjax.train.loop import load_model

    model, _ = load_model(workdir)  # from the run folder alone: no data pipeline
    log = prepared.log
    histories = {}
    for user in (1, 2, 3):
        rows = log.user == user
        histories[str(log.user_vocab.tokens[user])] = list(zip(log.item_vocab.decode(log.item[rows]).tolist(),
                                                               log.timestamp[rows].tolist()))
    vocab = json.loads((workdir / "vocab.json").read_text())
    rows, _ = recommend_rows(model, histories, vocab, 5)
    titles = log.items.get("movie_title") if log.items else None
    table = Table(title="top-5 recommendations (history excluded)")
    table.add_column("user")
    table.add_column("history")
    table.add_column("recommended")
    for row in rows:
        names = [str(titles[log.item_vocab.index[i]]) if titles is not None else i for i in row["items"]]
        table.add_row(row["user"], f"{row['known_history']} items", "; ".join(names))
    console.print(table)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
