"""The report's sections, each built from the run folder alone (`RunFolder`): no original data.

A section is a `Section` (title, figures, tables, notes) or says why it cannot be shown
(`missing`): a run without results, a model without attention, data without coordinates.
`SECTIONS` lists them in page order; the analyses' sections come from `ANALYSES`, one per
output file in `<workdir>/analysis/`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from stjax import models
from stjax.config import ConfigError, to_json
from stjax.report import figures
from stjax.runs import RunError, RunFolder, read_json
from stjax.serving.explain import explain_user
from stjax.serving.recommend import RecommendError
from stjax.train.build import load_model


@dataclasses.dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclasses.dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    figures: list = dataclasses.field(default_factory=list)
    tables: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)


class Run:
    """What the report reads of one run folder, read once."""

    def __init__(self, folder: RunFolder):
        self.folder = folder
        self.name = folder.path.resolve().name
        self.config = folder.config()
        self.record = folder.record()
        self.model = str(self.record.get("model", self.config.model.name))
        results_path = folder.path / "results.json"
        self.results = read_json(results_path, "the run's results") if results_path.exists() else None
        self.lines = folder.metrics()
        self.rows = folder.rows("test")

    @property
    def metric(self) -> str:
        """The run's selection metric without an evaluator prefix (`fold_in/ndcg@100` -> `ndcg@100`)."""
        return str(self.config.eval.metric).rpartition("/")[2]


def _number(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)


def _flatten(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def _date(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


# ----------------------------------------------------------------------------- summary


def summary(run: Run) -> Section:
    section = Section("summary", "Run and data")
    info = run.record.get("info", {})
    rows = [["model", run.model], ["batch kind", str(run.record.get("batch_kind", ""))],
            ["data source", str(run.config.data.get("source", ""))], ["split", str(run.config.data.get("split", ""))],
            ["users", _number(info.get("num_users"))], ["items", _number(info.get("num_items"))],
            ["history window (events)", _number(info.get("max_length"))]]
    try:
        histories = run.folder.histories()
        origin = int(run.record.get("time_origin", 0))
        stamps = histories.timestamps
        rows.append(["events (all parts of the split)", _number(int(len(histories.items)))])
        if len(stamps):
            rows.append(["time span", f"{_date(origin + int(stamps.min()))} to {_date(origin + int(stamps.max()))}"])
    except RunError as err:
        section.missing.append(f"no event counts: {err}")
    if run.results is not None:
        rows += [["best step", _number(run.results.get("best_step"))], ["steps trained", _number(run.results.get("steps"))],
                 ["stopped early", _number(run.results.get("stopped_early"))]]
        timings = run.results.get("timings", {})
        for key in ("train_s", "eval_s", "compile_s", "train_targets_per_s"):
            if timings.get(key) is not None:
                rows.append([key.replace("_", " "), _number(timings[key])])
    section.tables.append(Table("Run", ["", "value"], rows))
    config = json.loads(to_json(run.config))
    section.tables.append(Table("Resolved config", ["key", "value"],
                                [[key, json.dumps(value) if not isinstance(value, str) else value]
                                 for key, value in _flatten(config)],
                                "every key the run trained with (config.json)"))
    return section


# ----------------------------------------------------------------------------- training


def training(run: Run) -> Section:
    section = Section("training", "Training")
    train = [line for line in run.lines if "loss" in line and "eval" not in line]
    valid = [line for line in run.lines if line.get("eval") == "valid"]
    if not train and not valid:
        section.missing.append("no training curves: metrics.jsonl holds no records yet")
        return section
    best = (run.results or {}).get("best_step")
    if run.model in models.REGISTRY and not models.get(run.model).trainable:
        section.notes.append(f"'{run.model}' is a closed form with nothing to train: its parameters come from the "
                             "training data at once; the curves hold its single evaluation")
    if train:
        steps = np.array([line["step"] for line in train])
        section.figures.append(figures.curves(
            "Training loss", f"mean loss of each logging window of {run.model}, by optimizer step",
            [("train loss", steps, np.array([line["loss"] for line in train]))], "optimizer step", "loss (per target)",
            marker_x=best, marker_label=f"best validation (step {best})" if best is not None else ""))
    if valid:
        steps = np.array([line["step"] for line in valid])
        names = [run.metric] + [name for name in ("hr@10", "ndcg@10", "ndcg@100") if name != run.metric]
        series = [(name, steps, np.array([line.get(name, np.nan) for line in valid], float))
                  for name in names if any(name in line for line in valid)]
        if series:
            section.figures.append(figures.curves(
                "Validation accuracy", f"validation metrics at each evaluation; {run.metric} picks the checkpoint",
                series, "optimizer step", "metric value (0 to 1)", marker_x=best,
                marker_label=f"best (step {best})" if best is not None else ""))
    return section


# ----------------------------------------------------------------------------- metrics


def metrics(run: Run) -> Section:
    section = Section("metrics", "Final metrics")
    if run.results is None:
        section.missing.append("no results.json: the run has not finished (stjax train writes it at the end)")
        return section
    protocols = run.results.get("protocols", {})
    section.intro = "; ".join(f"{description}" for description in protocols.values())
    parts = {"valid": run.results.get("valid", {}), "test": run.results.get("test", {})}
    caption = f"best validation {run.metric} at step {run.results.get('best_step')}"
    if any("@" in name for values in parts.values() for name in values):
        section.tables.append(metrics_table(parts, "Best checkpoint on validation and test", caption))
    else:  # metrics without cut-offs (a forecaster's MASE, coverage)
        names = sorted({name for values in parts.values() for name in values if name != "num_users"})
        section.tables.append(Table("Best checkpoint on validation and test", ["metric", "valid", "test"],
                                    [[name, _number(parts["valid"].get(name)), _number(parts["test"].get(name))]
                                     for name in names], caption))
    return section


def metrics_table(parts: dict[str, dict], title: str, caption: str) -> Table:
    """Rows: (part, metric), columns: @K, from {part: {name@K: value}}."""
    names = sorted({name.split("@")[0] for metrics in parts.values() for name in metrics if "@" in name})
    ks = sorted({int(name.split("@")[1]) for metrics in parts.values() for name in metrics if "@" in name})
    rows = []
    for part, values in parts.items():
        for name in names:
            rows.append([part, name] + [_number(values.get(f"{name}@{k}")) if f"{name}@{k}" in values else ""
                                        for k in ks])
    return Table(title, ["run / part", "metric"] + [f"@{k}" for k in ks], rows, caption)


# ----------------------------------------------------------------------------- breakdowns


def _group_stats(values: np.ndarray, groups: np.ndarray, order: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, 95% normal interval half-width and count of `values` per group in `order`."""
    means, errors, counts = [], [], []
    for group in order:
        chosen = values[groups == group]
        counts.append(len(chosen))
        means.append(float(chosen.mean()) if len(chosen) else 0.0)
        errors.append(1.96 * float(chosen.std(ddof=1)) / math.sqrt(len(chosen)) if len(chosen) > 1 else 0.0)
    return np.array(means), np.array(errors), np.array(counts)


GAPS = [(0, 3600, "< 1 hour"), (3600, 86400, "1 hour - 1 day"), (86400, 7 * 86400, "1 day - 1 week"),
        (7 * 86400, 30 * 86400, "1 week - 30 days"), (30 * 86400, math.inf, "> 30 days")]


def history_bins(lengths: np.ndarray, count: int = 5) -> tuple[np.ndarray, list[str]]:
    """Up to `count` bins of about equal numbers of rows, by history length (integer edges)."""
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, count + 1)).round().astype(int)) if len(lengths) else \
        np.array([0, 1])
    if len(edges) < 2:  # every row has the same length: one bin
        edges = np.array([int(lengths.min()), int(lengths.max())])
    edges[-1] = max(edges[-1], int(lengths.max(initial=0))) + 1
    index = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, len(edges) - 2)
    labels = [f"{edges[i]}-{edges[i + 1] - 1}" for i in range(len(edges) - 1)]
    return index, labels


def breakdowns(run: Run) -> Section:
    section = Section("breakdowns", "Where the model is right and wrong")
    rows = run.rows
    if rows is None:
        section.missing.append(f"no per-row results (test_rows.npz): this run predates them; "
                               f"`stjax evaluate --workdir {run.folder.path}` writes them")
        return section
    if "quantiles" in rows:  # a forecaster: each series' test days
        return _forecast_rows(run, rows, section)
    metric = run.metric if run.metric in rows else next((n for n in rows if "@" in n and not n.startswith("about/")), None)
    if metric is None:
        section.missing.append("test_rows.npz holds no metric")
        return section
    values = rows[metric].astype(float)
    protocol = str(rows.get("protocol", ""))
    section.intro = (f"Test {metric} per group of test rows ({len(values):,} rows; {protocol}). Bars: mean; "
                     f"whiskers: 95% normal interval of the mean; n: rows in the group.")
    about = {name.split("/", 1)[1]: value for name, value in rows.items() if name.startswith("about/")}
    if not about:
        section.missing.append("the rows carry nothing about their users (an older test_rows.npz)")
        return section
    ylabel = f"test {metric} (mean)"

    index, labels = history_bins(about["history_length"])
    means, errors, counts = _group_stats(values, index, list(range(len(labels))))
    section.figures.append(figures.bars("Accuracy by history length", f"{metric} of users grouped by the number of "
                                        "events before their targets (bins of about equal size)",
                                        labels, means, errors, counts, "history length (events)", ylabel))

    regions, codes = about.get("regions"), about["region"]
    known = codes > 0
    if regions is not None and known.any():
        present, region_counts = np.unique(codes[known], return_counts=True)
        top = present[np.argsort(-region_counts, kind="stable")][:15]
        grouped = np.where(np.isin(codes, top), codes, np.where(known, -1, 0))
        order = list(top) + ([-1] if (grouped == -1).any() else []) + ([0] if (~known).any() else [])
        names = [str(regions[c]) if c > 0 else ("other regions" if c == -1 else "unknown") for c in order]
        means, errors, counts = _group_stats(values, grouped, order)
        section.figures.append(figures.bars("Accuracy by region", f"{metric} by the region of the first target "
                                            "(MovieLens: the user's state; check-ins: the H3 cell of the place); the "
                                            "15 largest regions", names, means, errors, counts, "region", ylabel,
                                            horizontal=True))
    else:
        section.missing.append("no region breakdown: the data name no regions")

    gaps = about["gap_seconds"]
    if (gaps < 0).any():
        section.missing.append("no breakdown by time since the previous event: the protocol (fold-in) draws input "
                               "and targets from the whole history, so they are not in time order")
    else:
        group = np.zeros(len(gaps), int)
        for number, (low, high, _) in enumerate(GAPS):
            group[(gaps >= low) & (gaps < high)] = number
        used = [number for number in range(len(GAPS)) if (group == number).any()]
        means, errors, counts = _group_stats(values, group, used)
        section.figures.append(figures.bars("Accuracy by time since the previous event",
                                            f"{metric} by the time from the user's last history event to the target",
                                            [GAPS[n][2] for n in used], means, errors, counts,
                                            "time since the previous event", ylabel))

    revisit = about["revisit"]
    single = rows["targets"].shape[1] == 1
    if single:
        group, order, names = (revisit > 0).astype(int), [0, 1], ["new item", "revisit"]
    else:
        group = np.digitize(revisit, [1e-9, 0.5 + 1e-9])
        order, names = [0, 1, 2], ["no target seen before", "up to half", "more than half"]
    used = [o for o in order if (group == o).any()]
    means, errors, counts = _group_stats(values, group, used)
    section.figures.append(figures.bars("Accuracy on revisits and new items",
                                        f"{metric} of targets the user had interacted with before (revisits) "
                                        "against items new to the user" if single else
                                        f"{metric} by the share of a user's targets seen before",
                                        [names[order.index(o)] for o in used], means, errors, counts,
                                        "target", ylabel))
    if single and not bool(run.config.eval.get("exclude_history", True)):
        section.notes.append("history items are ranked too (eval.exclude_history=false): revisits compete with "
                             "new items")
    return section


def _forecast_rows(run: Run, rows: dict, section: Section) -> Section:
    """A forecaster's test forecasts: the series with the largest volume, actual against forecast."""
    actual = rows["actual"].astype(float)
    order = np.argsort(-actual.sum(axis=1), kind="stable")
    horizon = actual.shape[1]
    days = np.arange(1, horizon + 1)
    section.intro = (f"The test days of {len(actual):,} series: the median forecast with its 95% interval against "
                     f"what happened (the {min(4, len(actual))} largest series).")
    for row in order[:4]:
        section.figures.append(figures.forecast_plot(
            f"{rows['series'][row]}", f"the {horizon} test days after the cutoff", days, actual[row], days,
            rows["mean"][row].astype(float), rows["lo-95"][row].astype(float), rows["hi-95"][row].astype(float),
            "test day", "events per day"))
    return section


def geography(run: Run) -> Section:
    section = Section("map", "Map")
    rows = run.rows
    if rows is None or "about/latitude" not in rows:
        section.missing.append("no map: no per-row results (stjax evaluate writes them)")
        return section
    latitude, longitude = rows["about/latitude"], rows["about/longitude"]
    known = np.isfinite(latitude) & np.isfinite(longitude)
    if not known.any():
        section.missing.append("no map: the data have no coordinates (latitude/longitude of users or places)")
        return section
    if not any(name.startswith("hr@") for name in rows):
        section.missing.append("no map: the rows carry no hits (the model ranks no items)")
        return section
    k = _hit_k(rows, run.metric)
    hit = rows[f"hr@{k}"][known] > 0
    section.figures.append(figures.scatter_map(
        "Test targets on the map", f"one dot per test row at its target's coordinates (MovieLens: the user's home), "
        f"coloured by whether a target is in the top {k}; {int(known.sum()):,} of {len(known):,} rows have coordinates",
        longitude[known], latitude[known], hit, f"hit@{k}", f"miss@{k}"))
    return section


def _hit_k(rows: dict, metric: str) -> int:
    ks = sorted(int(name.split("@")[1]) for name in rows if name.startswith("hr@"))
    wanted = int(metric.split("@")[1]) if "@" in metric else ks[0]
    return wanted if wanted in ks else ks[0]


# ----------------------------------------------------------------------------- attention


def attention(run: Run, users: list[str] | None = None, top: int = 8) -> Section:
    section = Section("attention", "Attention behind recommendations")
    if run.model not in models.REGISTRY:
        section.missing.append(f"no attention: model '{run.model}' is not one of this stjax's models")
        return section
    spec = models.get(run.model)
    if spec.explain is None:
        with_attention = sorted(name for name, other in models.REGISTRY.items() if other.explain is not None)
        section.missing.append(f"no attention: model '{run.model}' has none (the report shows the attention of "
                               f"{', '.join(with_attention)})")
        return section
    vocab = run.folder.vocab()
    if not users:
        if run.rows is not None and len(run.rows["users"]):
            order = np.argsort(-run.rows[run.metric if run.metric in run.rows else "hr@10"], kind="stable")
            users = [str(vocab["users"][int(run.rows["users"][i])]) for i in order[:2]]
        else:
            users = [str(token) for token in vocab["users"][1:3]]
    try:
        model, _ = load_model(run.folder.path)
    except (RunError, ConfigError) as err:
        section.missing.append(f"no attention: {err}")
        return section
    titles = {"neighbours": ("neighbours (users)", "GAT attention"), "items": ("past items", "temporal attention"),
              "places": ("places", "attention carried by places"), "recalled": ("recalled items", "score weight")}
    for user in users:
        try:
            result = explain_user(model, run.folder.path, user, 10, top)
        except RecommendError as err:
            section.missing.append(f"user {user}: {err}")
            continue
        section.tables.append(Table(f"User {result['user']}: top {len(result['recommendations'])} recommendations",
                                    ["rank", "item", "score"],
                                    [[str(rank), row["item"], f"{row['score']:.4f}"]
                                     for rank, row in enumerate(result["recommendations"], 1)],
                                    f"from {result['history']} events of the user's history"))
        for kind, (title, what) in titles.items():
            entries = result.get(kind)
            if entries:
                section.figures.append(figures.weights(
                    f"User {result['user']}: {title}", f"the model's own {what} over its {title} (averaged over heads; "
                    f"the {len(entries)} largest)", [entry["id"] for entry in entries],
                    np.array([entry["weight"] for entry in entries]), "attention weight (0 to 1)"))
        if "parts" in result:
            section.tables.append(Table(f"User {result['user']}: weights of the model's parts", ["part", "weight"],
                                        [[name, f"{weight:.3f}"] for name, weight in result["parts"].items()]))
    return section


# ----------------------------------------------------------------------------- analyses


@dataclasses.dataclass(frozen=True)
class Analysis:
    """The report section of one analysis output, `<workdir>/analysis/<file>`."""

    file: str
    title: str
    render: Callable[[dict, Section], None]


ANALYSES: dict[str, Analysis] = {}


def register_analysis(analysis: Analysis) -> Analysis:
    ANALYSES[analysis.file] = analysis
    return analysis


def analyses(run: Run, extra: list = ()) -> list[Section]:
    """A section per analysis output in the run's `analysis/` folder and in `extra` folders."""
    folders = [run.folder.path / "analysis", *[Path(path) for path in extra]]
    for folder in folders[1:]:
        if not folder.is_dir():
            raise RunError(f"--analyses {folder}: not a folder of analysis outputs")
    present = [path for folder in folders if folder.is_dir() for path in sorted(folder.glob("*.json"))]
    sections = []
    for number, path in enumerate(present):
        analysis = ANALYSES.get(path.name)
        title = analysis.title if analysis else f"Analysis: {path.stem}"
        section = Section(f"analysis-{number}-{path.stem}", title, notes=[f"from {path}"])
        try:
            output = read_json(path, "an analysis output")
        except RunError as err:
            section.missing.append(str(err))
            sections.append(section)
            continue
        if analysis is None:
            section.missing.append(f"{path.name}: no section of the report reads this file")
        else:
            try:
                analysis.render(output, section)
            except (KeyError, TypeError, ValueError, IndexError) as err:
                section.missing.append(f"{path}: not a {analysis.file} this report can read "
                                       f"({err.__class__.__name__}: {err})")
        sections.append(section)
    if not present:
        section = Section("analyses", "Analyses")
        names = ", ".join(a.file for a in ANALYSES.values())
        section.missing.append(f"no analysis outputs in {' or '.join(str(f) for f in folders)} (the report reads "
                               f"{names}; `stjax analyze ... --out DIR` writes them)")
        sections.append(section)
    return sections


SECTIONS = (summary, training, metrics, breakdowns, geography)
