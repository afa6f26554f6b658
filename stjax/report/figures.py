"""The report's figures: matplotlib (Agg) drawn to PNG and embedded as data URIs, so the page
needs no script, no network and no viewer beyond a browser.

Every figure has a title, labelled axes with units and a caption (`Figure`). Text from the data
(item titles, region names) is drawn literally: mathtext is off, a `$` is a dollar sign.
"""

from __future__ import annotations

import base64
import dataclasses
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend first)
import numpy as np  # noqa: E402

STYLE = {"text.parse_math": False, "figure.dpi": 100, "font.size": 9, "axes.titlesize": 10,
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}
HIT, MISS = "#1b9e77", "#b0b0b0"


@dataclasses.dataclass(frozen=True)
class Figure:
    """One embedded image: `src` is a data:image/png URI of the `png` bytes."""

    title: str
    caption: str
    src: str
    alt: str
    png: bytes = dataclasses.field(default=b"", repr=False)


def _figure(title: str, caption: str, draw, size=(6.4, 3.4)) -> Figure:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=size, layout="constrained")
        try:
            draw(ax)
            ax.set_title(title)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
        finally:
            plt.close(fig)
    png = buffer.getvalue()
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return Figure(title, caption, src, alt=f"{title}: {caption}", png=png)


def curves(title: str, caption: str, series: list[tuple[str, np.ndarray, np.ndarray]], xlabel: str, ylabel: str,
           marker_x: float | None = None, marker_label: str = "") -> Figure:
    """Lines y(x), one per (label, x, y); an optional vertical marker (the best step)."""

    def draw(ax):
        for label, x, y in series:
            ax.plot(x, y, marker="o" if len(x) <= 30 else None, markersize=3, linewidth=1.4, label=label)
        if marker_x is not None:
            ax.axvline(marker_x, color="#d95f02", linestyle="--", linewidth=1, label=marker_label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if len(series) > 1 or marker_x is not None:
            ax.legend(fontsize=8)

    return _figure(title, caption, draw)


def bars(title: str, caption: str, labels: list[str], means: np.ndarray, errors: np.ndarray, counts: np.ndarray,
         xlabel: str, ylabel: str, horizontal: bool = False) -> Figure:
    """Mean per group with a 95% interval; each group's label names its number of rows (n)."""
    positions = np.arange(len(labels))
    named = [f"{label} (n={count:,})" if horizontal else f"{label}\nn={count:,}" for label, count in zip(labels, counts)]

    def draw(ax):
        if horizontal:
            ax.barh(positions, means, xerr=errors, color="#7570b3", capsize=2)
            ax.set_yticks(positions, named)
            ax.invert_yaxis()
            ax.set_xlabel(ylabel)
            ax.set_ylabel(xlabel)
        else:
            ax.bar(positions, means, yerr=errors, color="#7570b3", capsize=2)
            ax.set_xticks(positions, named)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)

    height = max(3.0, 0.3 * len(labels) + 1.0) if horizontal else 3.6
    return _figure(title, caption, draw, size=(6.4, height))


def scatter_map(title: str, caption: str, longitude: np.ndarray, latitude: np.ndarray, hit: np.ndarray,
                hit_label: str, miss_label: str) -> Figure:
    """Points at their coordinates (equirectangular degrees), hits in colour over misses in grey."""

    def draw(ax):
        ax.scatter(longitude[~hit], latitude[~hit], s=6, color=MISS, alpha=0.6, label=miss_label, linewidths=0)
        ax.scatter(longitude[hit], latitude[hit], s=8, color=HIT, alpha=0.8, label=hit_label, linewidths=0)
        ax.set_xlabel("longitude (degrees east)")
        ax.set_ylabel("latitude (degrees north)")
        middle = float(np.nanmean(latitude)) if len(latitude) else 0.0
        ax.set_aspect(1.0 / max(np.cos(np.radians(middle)), 0.1))  # degrees of longitude shrink with latitude
        ax.legend(fontsize=8, markerscale=2)

    return _figure(title, caption, draw, size=(6.4, 4.6))


def weights(title: str, caption: str, labels: list[str], values: np.ndarray, xlabel: str) -> Figure:
    """Horizontal bars of attention weights, largest on top."""

    def draw(ax):
        positions = np.arange(len(labels))
        ax.barh(positions, values, color="#e7298a")
        ax.set_yticks(positions, [label if len(label) <= 40 else label[:39] + "…" for label in labels])
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("entry")

    return _figure(title, caption, draw, size=(6.4, max(2.4, 0.28 * len(labels) + 1.2)))


def bands(title: str, caption: str, series: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
          xlabel: str, ylabel: str, dates: bool = True) -> Figure:
    """Lines with shaded intervals, one per (label, x, y, low, high); x in UTC seconds when `dates`."""

    def draw(ax):
        for label, x, y, low, high in series:
            xs = x.astype("datetime64[s]") if dates else x
            (line,) = ax.plot(xs, y, linewidth=1.4, marker="o", markersize=2.5, label=label)
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if len(series) > 1:
            ax.legend(fontsize=7, ncol=2)
        if dates:
            ax.figure.autofmt_xdate()

    return _figure(title, caption, draw, size=(6.4, 3.6))


def heatmap(title: str, caption: str, values: np.ndarray, rows: list[str], columns: list[str], marked: np.ndarray,
            xlabel: str, ylabel: str, colorbar: str) -> Figure:
    """values [rows, columns] as colours (NaN blank); `marked` cells get a dot."""

    def draw(ax):
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis", interpolation="nearest")
        ax.grid(False)
        ax.set_yticks(np.arange(len(rows)), rows)
        step = max(1, len(columns) // 12)
        ax.set_xticks(np.arange(0, len(columns), step), columns[::step], rotation=45, ha="right")
        r, c = np.nonzero(marked)
        ax.scatter(c, r, s=9, color="white", edgecolors="black", linewidths=0.4)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.figure.colorbar(image, ax=ax, label=colorbar)

    return _figure(title, caption, draw, size=(6.8, max(3.0, 0.28 * len(rows) + 1.6)))


def histogram(title: str, caption: str, values: np.ndarray, xlabel: str, ylabel: str, bins: int = 40) -> Figure:
    def draw(ax):
        ax.hist(values, bins=bins, color="#66a61e")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)

    return _figure(title, caption, draw)


def forecast_plot(title: str, caption: str, days: np.ndarray, actual: np.ndarray, ahead: np.ndarray,
                  mean: np.ndarray, low: np.ndarray, high: np.ndarray, xlabel: str, ylabel: str) -> Figure:
    """Actual values with a forecast and its interval over the days `ahead`."""

    def draw(ax):
        ax.plot(days, actual, color="#333333", linewidth=1.2, label="actual")
        ax.fill_between(ahead, low, high, color="#1f78b4", alpha=0.2, linewidth=0, label="95% interval")
        ax.plot(ahead, mean, color="#1f78b4", linewidth=1.6, marker="o", markersize=3, label="forecast")
        ax.axvline(ahead[0] - 0.5, color="#d95f02", linestyle="--", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)

    return _figure(title, caption, draw)
