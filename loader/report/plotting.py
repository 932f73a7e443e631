"""Plotting helpers shared by the report's figures: CDFs, axis scales, time bins, saving.

Figures are built with matplotlib's object API (no pyplot, no global state) and saved as
PNG and SVG with fixed metadata and hash salt, so that the same data gives the same bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: At most this many points of a CDF are drawn (evenly spaced ranks, the extremes kept).
CDF_POINTS = 3000
WIDTH_IN = 11.0
DPI = 100
OTHER_COLOR = "#7f7f7f"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#393b79", "#637939", "#8c6d31")
STATUS_COLORS = {"success": "#2ca02c", "application_error": "#ff7f0e", "developer_error": "#d62728",
                 "internal_error": "#8c564b", "throttled": "#9467bd", "http_error": "#e377c2",
                 "connection_error": "#17becf", "lost": "#000000", "cancelled": "#bcbd22", "sent": "#7f7f7f",
                 "planned": "#c7c7c7", "store_error": "#393b79"}


@dataclass(frozen=True)
class SavedFigure:
    """A figure written as ``name.png`` and ``name.svg``; ``png`` holds the PNG bytes for embedding."""

    name: str
    title: str
    caption: str
    png: bytes


def new_figure(rows: int = 1, columns: int = 1, height_in: float = 3.6) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(WIDTH_IN, height_in * rows), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes


def save(figure: Figure, directory: Path, name: str, title: str, caption: str) -> SavedFigure:
    with matplotlib.rc_context({"svg.hashsalt": "faasload-report", "svg.fonttype": "path"}):
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=DPI)
        figure.savefig(directory / f"{name}.svg", format="svg", metadata={"Date": None})
    (directory / f"{name}.png").write_bytes(png.getvalue())
    return SavedFigure(name, title, caption, png.getvalue())


def color_of(index: int, name: str) -> str:
    return OTHER_COLOR if name.startswith("other (") else PALETTE[index % len(PALETTE)]


def no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def cdf(ax: Axes, values: np.ndarray, label: str, color: str | None = None, **style) -> bool:
    """Draw the empirical CDF of ``values`` (a step at each value); False when empty."""
    values = np.sort(values[~np.isnan(values)])
    if values.size == 0:
        return False
    probabilities = np.arange(1, values.size + 1) / values.size
    if values.size > CDF_POINTS:
        keep = np.unique(np.linspace(0, values.size - 1, CDF_POINTS).round().astype(int))
        values, probabilities = values[keep], probabilities[keep]
    ax.step(np.concatenate([[values[0]], values]), np.concatenate([[0.0], probabilities]), where="post",
            label=label, color=color, linewidth=1.4, **style)
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="major", alpha=0.3)
    return True


def scale_for(ax: Axes, values: list[np.ndarray], axis: str = "x") -> None:
    """A log-like scale when the values span more than two decades: symlog, linear below the
    smallest positive value's decade (so that zeros stay visible)."""
    joined = np.concatenate([v[~np.isnan(v)] for v in values]) if values else np.array([])
    positive = joined[joined > 0]
    if positive.size == 0 or positive.max() / positive.min() < 100:
        return
    threshold = 10 ** math.floor(math.log10(positive.min()))
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    if (joined <= 0).any():
        setter("symlog", linthresh=threshold, linscale=0.3)
        plain_ticks(ax, axis)
        if joined.min() >= 0:  # nothing negative: no room for it
            if axis == "x":
                ax.set_xlim(left=0)
            else:
                ax.set_ylim(bottom=0)
    else:
        setter("log")
        plain_ticks(ax, axis)


def plain_ticks(ax: Axes, axis: str = "x") -> None:
    """Tick labels of a log axis as plain numbers (0.5, 2, 100), not powers of ten."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(ticker.NullFormatter())


def bin_width_s(duration_s: float) -> int:
    """Width of the time bins of "over time" figures: 1 s up to 5 min, 10 s up to 1 h, else 1 min."""
    if duration_s <= 300:
        return 1
    if duration_s <= 3600:
        return 10
    return 60


def bin_label(width_s: int) -> str:
    return {1: "1 s", 10: "10 s", 60: "1 min"}.get(width_s, f"{width_s} s")
