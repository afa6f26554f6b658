"""`stjax report`: one self-contained HTML page per run (or several runs side by side), built from
run folders alone.

The page comes from a Jinja2 template with autoescaping on, so every string of the data or the
run (ids, titles, config values) is shown as text; figures are PNG data URIs and a Content
Security Policy forbids scripts and fetches, so the file opens offline and runs nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from stjax.report import (
    analysis_sections,  # noqa: F401  (registers the analyses' sections)
    figures,
)
from stjax.report.sections import (
    ANALYSES,
    SECTIONS,
    Analysis,
    Run,
    Section,
    Table,
    analyses,
    attention,
    metrics_table,
    register_analysis,
)
from stjax.runs import RunFolder

__all__ = ["ANALYSES", "Analysis", "Section", "Table", "compare_report", "register_analysis", "run_report",
           "write_page"]

_NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")


def _environment():
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("stjax.report", "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    environment.tests["number_like"] = lambda value: bool(_NUMBER.match(str(value)))
    return environment


def write_page(out: str | Path, title: str, subtitle: str, sections: list[Section], sources: list[str]) -> Path:
    out = Path(out)
    try:
        version = metadata.version("stjax")
    except metadata.PackageNotFoundError:
        version = "(source)"
    html = _environment().get_template("report.html.j2").render(
        title=title, subtitle=subtitle, sections=sections, sources=", ".join(sources), version=version,
        written=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


def run_report(workdir: str | Path, out: str | Path | None = None, users: list[str] | None = None,
               top: int = 8, analysis_dirs: list[str | Path] = ()) -> tuple[Path, list[Section]]:
    """The report of one run folder -> (the HTML file, its sections). users: original ids whose
    attention is shown (default: the two best-ranked test users); analysis_dirs: folders of
    analysis outputs shown besides the run's own `analysis/`."""
    run = Run(RunFolder(workdir))
    sections = [build(run) for build in SECTIONS]
    sections.append(attention(run, users, top))
    sections.extend(analyses(run, [Path(path) for path in analysis_dirs]))
    out = Path(out) if out is not None else run.folder.path / "report.html"
    protocol = "; ".join((run.results or {}).get("protocols", {}).values())
    subtitle = f"model {run.model}, data {run.config.data.get('source', '')}" + (f" ({protocol})" if protocol else "")
    return write_page(out, f"stjax report: {run.name}", subtitle, sections, [str(run.folder.path)]), sections


def compare_report(workdirs: list[str | Path], out: str | Path) -> tuple[Path, list[Section]]:
    """Several runs side by side: their validation and loss curves on shared axes and one metrics table."""
    runs = [Run(RunFolder(path)) for path in workdirs]
    labels = _labels(runs)
    curves = Section("curves", "Training side by side")
    metric_names = sorted({run.metric for run in runs})
    for metric in metric_names:
        series = []
        for label, run in zip(labels, runs):
            valid = [line for line in run.lines if line.get("eval") == "valid" and metric in line]
            if valid:
                series.append((label, _epochs(run, valid), np.array([line[metric] for line in valid], float)))
        if series:
            curves.figures.append(figures.curves(f"Validation {metric}", f"validation {metric} of each run at each "
                                                 "evaluation, by epoch (steps divided by the run's steps per epoch)",
                                                 series, "epoch", f"{metric} (0 to 1)"))
        else:
            curves.missing.append(f"no validation curve of {metric}: no run has one")
    losses = []
    for label, run in zip(labels, runs):
        train = [line for line in run.lines if "loss" in line and "eval" not in line]
        if train:
            losses.append((label, _epochs(run, train), np.array([line["loss"] for line in train], float)))
    if losses:
        curves.figures.append(figures.curves("Training loss", "each run's mean training loss by epoch (losses of "
                                             "different models are on their own scales)", losses, "epoch",
                                             "loss (per target)"))
    without = [label for label, run in zip(labels, runs) if not any("loss" in line for line in run.lines)]
    if without:
        curves.notes.append(f"no training curve (closed form or not started): {', '.join(without)}")

    table = Section("metrics", "Metrics side by side")
    rows = {}
    for label, run in zip(labels, runs):
        if run.results is None:
            table.missing.append(f"{label}: no results.json (the run has not finished)")
            continue
        rows[f"{label} test"] = run.results.get("test", {})
    if rows:
        table.tables.append(metrics_table(rows, "Test metrics of the best checkpoint of each run",
                                          "each run's own protocol: " + "; ".join(
                                              f"{label}: {', '.join((run.results or {}).get('protocols', {}).values())}"
                                              for label, run in zip(labels, runs))))
        table.tables.append(Table("Runs", ["run", "model", "best step", "steps", "stopped early", "train s"],
                                  [[label, run.model, str(run.results.get("best_step")), str(run.results.get("steps")),
                                    str(run.results.get("stopped_early")),
                                    f"{run.results.get('timings', {}).get('train_s', 0):.1f}"]
                                   for label, run in zip(labels, runs) if run.results is not None]))
    sections = [curves, table]
    return write_page(out, f"stjax report: {len(runs)} runs compared", ", ".join(labels), sections,
                      [str(run.folder.path) for run in runs]), sections


def _labels(runs: list[Run]) -> list[str]:
    labels = [f"{run.name} ({run.model})" for run in runs]
    seen: dict[str, int] = {}
    for index, label in enumerate(labels):  # two folders with one name: number them
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[index] = f"{label} #{seen[label]}"
    return labels


def _epochs(run: Run, lines: list[dict]) -> np.ndarray:
    """Steps as epochs, from the run's own train lines (step / epoch)."""
    ratios = [line["step"] / line["epoch"] for line in run.lines if line.get("epoch")]
    per_epoch = ratios[-1] if ratios else 1.0
    return np.array([line["step"] / per_epoch for line in lines], float)
