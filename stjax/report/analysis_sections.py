"""Report sections of the analyses' outputs (`<dir>/<name>.json`), one renderer per file name,
registered in `stjax.report.sections.ANALYSES`."""

from __future__ import annotations

import numpy as np

from stjax.report import figures
from stjax.report.sections import Analysis, Section, Table, register_analysis


def _values(entries) -> np.ndarray:
    return np.array([np.nan if value is None else value for value in entries], float)


def _day(seconds: int) -> str:
    return str(np.datetime64(int(seconds), "s").astype("datetime64[D]"))


def render_drift(output: dict, section: Section) -> None:
    starts = np.array(output["window_starts"], np.int64)
    steps = starts[1:]  # drift[w] compares window w with window w - 1: drawn at window w's start
    section.intro = (f"Interest = {output['interest']} ({len(output['labels'])} labels), windows of one "
                     f"{output['window']}, {output['events']:,} events, {output['regions_analysed']} of "
                     f"{output['regions_total']} regions. {output['method']}.")
    overall = output["global"]
    section.figures.append(figures.bands(
        "Global interest drift", f"Jensen-Shannon divergence between the {output['interest']} distributions of "
        "consecutive windows, all events; band: 95% bootstrap interval",
        [("all regions", steps, _values(overall["drift"]), _values(overall["drift_low"]),
          _values(overall["drift_high"]))], "window start (UTC)", "drift (JSD, bits)"))
    regions = output["regions"]
    largest = sorted(regions, key=lambda name: -sum(regions[name]["events"]))[:6]
    if largest:
        section.figures.append(figures.bands(
            "Drift of the largest regions", "the same divergence per region (the six regions with the most events); "
            "bands: 95% bootstrap intervals",
            [(name, steps, _values(regions[name]["drift"]), _values(regions[name]["drift_low"]),
              _values(regions[name]["drift_high"])) for name in largest], "window start (UTC)", "drift (JSD, bits)"))
    if largest and not output.get("gap_tested", True):
        section.notes.append("no gap to everyone: with visited areas as the interest, each region's areas are its "
                             "own, so every region differs from the whole city by construction")
    elif largest:
        names = sorted(regions, key=lambda name: -sum(regions[name]["events"]))
        gaps = np.array([_values(regions[name]["gap"]) for name in names])
        marked = np.array([[q is not None and q <= 0.05 for q in regions[name]["gap_q"]] for name in names])
        section.figures.append(figures.heatmap(
            "Regions against everyone", "divergence of each region's distribution from the global one per window; "
            "dots: larger than sampling alone explains (Benjamini-Hochberg q <= 0.05); blank: too few events",
            gaps, names, [_day(s) for s in starts], marked, "window start (UTC)", "region", "gap (JSD, bits)"))
    diverging = output.get("diverging", [])
    if diverging:
        section.tables.append(Table("Where and when regions diverge from everyone", ["region", "window", "gap", "q"],
                                    [[entry["region"], _day(starts[entry["window"]]), f"{entry['gap']:.4f}",
                                      f"{entry['q']:.4f}"] for entry in diverging[:15]],
                                    f"{len(diverging)} (region, window) cells with q <= 0.05, largest gaps first"))
    elif output.get("gap_tested", True):
        section.notes.append("no region diverges from the global distribution beyond sampling noise (q <= 0.05)")
    section.tables.append(Table("Regions' drift against the global trend",
                                ["region", "events", "correlation with global drift", "windows moving more (95%)"],
                                [[name, f"{sum(regions[name]['events']):,}",
                                  "" if regions[name].get("trend_correlation") is None else
                                  f"{regions[name]['trend_correlation']:.3f}",
                                  str(sum(1 for low in regions[name]["excess_low"] if low is not None and low > 0))]
                                 for name in sorted(regions, key=lambda n: -sum(regions[n]["events"]))],
                                "a window moves more when the 95% interval of (region drift - global drift) is above 0"))
    for step in output.get("vectors", {}).get("steps", []):
        regions = step.get("regions", {})
        section.tables.append(Table(
            f"User vectors {step['from']} -> {step['to']}", ["users of", "users", "movement", "95% interval"],
            [["everyone", f"{step['users']:,}", f"{step['mean']:.4f}", f"{step['low']:.4f}-{step['high']:.4f}"]]
            + [[name, f"{entry['users']:,}", f"{entry['mean']:.4f}", f"{entry['low']:.4f}-{entry['high']:.4f}"]
               for name, entry in sorted(regions.items(), key=lambda kv: -kv[1]["mean"])[:15]],
            "movement: cosine distance between a user's vectors after aligning the two models (orthogonal Procrustes); "
            f"without alignment everyone would seem to move {step['unaligned_mean']:.4f}"))


register_analysis(Analysis("drift.json", "Analysis: interest drift by time and region", render_drift))


def render_anomalies(output: dict, section: Section) -> None:
    methods = ", ".join(output["methods"])
    rank_by = output.get("rank_by", output["methods"][0])
    section.intro = (f"{output['users']:,} users of the run scored by {methods} (combined: the mean rank percentile "
                     f"over the methods); listed by {rank_by}.")
    scores = np.array(list(output["scores"][rank_by].values()), float)
    known = {row["user"] for row in output["top"] if row.get("known")}
    section.figures.append(figures.histogram(
        "Anomaly scores of all users", f"the {rank_by} score of every user of the run; the most unusual are listed "
        "below", scores, f"{rank_by} score (higher: more unusual)", "users"))
    section.tables.append(Table(f"The {len(output['top'])} most unusual users",
                                ["rank", "user", "score", "what is off (value, median, robust z)"],
                                [[str(rank), row["user"] + (" (known anomalous)" if row["user"] in known else ""),
                                  f"{row['score']:.3f}",
                                  "; ".join(f"{o['feature']} {o['value']:.3g} ({o['median']:.3g}, {o['z']:+.1f})"
                                            for o in row["off"])]
                                 for rank, row in enumerate(output["top"], 1)]))
    for kind, methods in output.get("evaluation_by_kind", {}).items():
        measures = ["roc_auc", "pr_auc", "precision@20", "recall@20"]
        section.tables.append(Table(f"Injected {kind} users against the genuine ones", ["method", *measures],
                                    [[method, *[f"{values[m]:.3f}" for m in measures]]
                                     for method, values in methods.items()],
                                    f"{next(iter(methods.values()))['anomalous']} {kind} users"))
    evaluation = output.get("evaluation")
    if evaluation:
        measures = [name for name in next(iter(evaluation.values())) if name != "anomalous"]
        section.tables.append(Table("Each method against the truth", ["method", *measures],
                                    [[method, *[f"{values[m]:.3f}" for m in measures]]
                                     for method, values in evaluation.items()],
                                    f"{next(iter(evaluation.values()))['anomalous']} anomalous users: "
                                    f"{output.get('truth', '')}"))


register_analysis(Analysis("anomalies.json", "Analysis: anomalous users", render_anomalies))


def _engine_note(output: dict) -> str:
    """What the engine's forecasters did in each fold (or that none ran)."""
    folds = output.get("engine_folds", {})
    if not folds:
        return " No stjax forecaster ran in this backtest (stjax analyze forecast --neural names them)."
    parts = []
    for name, about in folds.items():
        epochs = [fold.get("epochs", 0) for fold in about]
        parts.append(f"{name} trained once per fold by the engine on the days before the cutoff (the last "
                     f"{output['horizon']} of them for early stopping): {min(epochs):.0f}-{max(epochs):.0f} epochs, "
                     f"early stopping fired in {sum(bool(fold.get('stopped_early')) for fold in about)} of {len(about)}")
    return " " + "; ".join(parts) + "."


def render_forecast(output: dict, section: Section) -> None:
    horizon, cutoffs = output["horizon"], output["cutoffs"]
    section.intro = (f"{output['source']}: {output['definition']}; {len(output['series'])} series of "
                     f"{output['days']:,} days. Rolling-origin backtest: {len(cutoffs)} folds of {horizon} days with "
                     f"an expanding window (cutoffs at day {cutoffs[0]} to {cutoffs[-1]} of the panel). MASE is scaled "
                     f"by each fold's in-sample seasonal-naive error at lag {output['season']}." + _engine_note(output))
    measures = ["mae", "rmse", "smape", "mase", "coverage-80", "coverage-95"]
    section.tables.append(Table("Backtest, averaged over series and folds", ["model", *measures],
                                [[name, *[f"{values[m]:.3f}" for m in measures]]
                                 for name, values in sorted(output["models"].items(), key=lambda kv: kv[1]["mase"])],
                                f"best by MASE: {output['best_by_mase']}; coverage: the share of actual days inside "
                                "the 80% and 95% intervals"))
    best = output["last_fold"][output["best_by_mase"]]
    history = np.array(output["history"], float)
    start = output["history_start"]
    cutoff = cutoffs[-1]
    days = np.arange(start, start + history.shape[1])
    ahead = np.arange(cutoff, cutoff + horizon)
    for row in range(min(3, len(output["series"]))):
        section.figures.append(figures.forecast_plot(
            f"{output['series'][row]}: the last fold", f"daily volume before and after the last cutoff (day {cutoff}) "
            f"and {output['best_by_mase']}'s forecast with its 95% interval", days, history[row], ahead,
            np.array(best["mean"][row]), np.array(best["lo-95"][row]), np.array(best["hi-95"][row]),
            f"day ({output['day_unit']}, counted in the panel)", "events per day"))


register_analysis(Analysis("forecast.json", "Analysis: forecasts of behaviour volume", render_forecast))


def render_profiles(output: dict, section: Section) -> None:
    k = output["kinds"]
    section.intro = (f"{output['users']:,} users clustered by k-means on {output['vectors']}; {k} kinds, the number "
                     f"with the largest silhouette ({output['silhouette'][str(k)]:.3f}).")
    ks = sorted(int(key) for key in output["silhouette"])
    section.figures.append(figures.curves("Choosing the number of kinds", "silhouette of the k-means solution for each "
                                          "number of kinds tried (larger: better separated)",
                                          [("silhouette", np.array(ks), np.array([output["silhouette"][str(x)]
                                                                                  for x in ks]))],
                                          "number of kinds", "silhouette (-1 to 1)", marker_x=k,
                                          marker_label=f"chosen: {k}"))
    section.tables.append(Table("The kinds of users", ["kind", "users", "top interests (share, lift)", "top regions",
                                                       "peak hours (UTC)", "peak weekday", "median events"],
                                [[str(p["kind"]), f"{p['users']:,}",
                                  ", ".join(f"{i['label']} ({i['share']:.2f}, {i['lift']:.2f})" for i in p["top_interests"]),
                                  ", ".join(f"{r['region']} ({r['share']:.2f})" for r in p["top_regions"]),
                                  p["peak_hours_utc"], p["peak_weekday"], f"{p['median_events']:.0f}"]
                                 for p in output["profiles"]]))
    if "kind_sizes_by_window" in output:
        sizes = np.array(output["kind_sizes_by_window"], float)
        starts = np.array(output["window_starts"], np.int64)
        shares = sizes / np.maximum(sizes.sum(axis=1, keepdims=True), 1)
        section.figures.append(figures.bands(
            "Kinds over time", f"share of each {output['window']}'s active users in each kind (each window's events "
            "alone, assigned to the nearest centre)",
            [(f"kind {kind}", starts, shares[:, kind], shares[:, kind], shares[:, kind]) for kind in range(k)],
            "window start (UTC)", "share of active users"))
        section.notes.append(f"{output['stay_rate']:.1%} of a user's consecutive active windows keep their kind "
                             f"({output['moves']:,} moves)")
        section.tables.append(Table("Who moves where", ["from \\ to", *[f"kind {j}" for j in range(k)]],
                                    [[f"kind {i}", *[f"{value:,}" for value in row]]
                                     for i, row in enumerate(output["transitions"])],
                                    "users in a kind in one window and in a kind in the next"))
    else:
        section.notes.append("no membership over time: a model's vectors are one per user, not per window")


register_analysis(Analysis("profiles.json", "Analysis: user profiles", render_profiles))


def render_feedback(output: dict, section: Section) -> None:
    rounds = output["rounds"]
    settings = output["settings"]
    section.intro = (f"{output['model']}'s top-{settings['k']} shown to the synthetic data's users for "
                     f"{settings['rounds']} rounds; each user takes one item (a share {settings['organic']} chosen "
                     f"outside the list from their own preferences) and the model is updated on the choices "
                     f"({settings['update_epochs']} epochs of stjax update per round). {output['method']}")
    measures = ["hr", "recall", "utility", "coverage", "gini", "regional_jsd", "chosen_popularity"]
    section.tables.append(Table("Per round (lists shown before the round's update)", ["round", *measures],
                                [[str(line["round"]), *[f"{line[m]:.4f}" if m in line else "" for m in measures]]
                                 for line in rounds], "round 0: the trained model before any feedback"))
    steps = np.array([line["round"] for line in rounds], float)
    section.figures.append(figures.curves(
        "Accuracy against the true preferences", "HR and recall of the shown lists against each user's true top-K, "
        "and the utility of the lists relative to the best possible", [
            (name, steps, np.array([line[name] for line in rounds], float)) for name in ("hr", "recall", "utility")],
        "round", "share (0 to 1)"))
    section.figures.append(figures.curves(
        "Diversity", "catalogue coverage, Gini of exposure, and the mean JSD between regions' exposure "
        "(falling: regions are shown the same items)", [
            (name, steps, np.array([line[name] for line in rounds], float))
            for name in ("coverage", "gini", "regional_jsd")], "round", "value"))


register_analysis(Analysis("feedback.json", "Analysis: a simulated feedback loop", render_feedback))
