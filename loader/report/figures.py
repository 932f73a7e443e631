"""The figures of one experiment (each returns a :class:`~.plotting.SavedFigure`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .data import ExperimentData, floats, percentile
from .plotting import (
    STATUS_COLORS,
    SavedFigure,
    bin_label,
    bin_width_s,
    cdf,
    color_of,
    new_figure,
    no_data,
    plain_ticks,
    save,
    scale_for,
)

LABEL_CHARS = 48


def short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"


def duration_s(runs: pd.DataFrame) -> float:
    ends = [runs["planned_s"].max(), runs["sent_s"].max()]
    return float(max([e for e in ends if not pd.isna(e)], default=0.0))


def _edges(duration: float, width_s: float) -> np.ndarray:
    return np.arange(0, max(1, math.ceil(duration / width_s + 1e-9)) + 1) * width_s


def rate(data: ExperimentData, directory: Path, name: str) -> SavedFigure:
    runs = data.runs
    figure, axes = new_figure(2, 1, 3.0)
    duration = duration_s(runs)
    for ax, width, unit in ((axes[0, 0], 1, "s"), (axes[1, 0], 60, "min")):
        edges = _edges(duration, width)
        planned, _ = np.histogram(floats(runs["planned_s"]), edges)
        issued, _ = np.histogram(floats(runs["sent_s"]), edges)
        ax.stairs(planned, edges / width, label="planned", color="#9ecae1", linewidth=3.5)
        ax.stairs(issued, edges / width, label="issued", color="#08519c", linewidth=1.2)
        ax.set_ylabel(f"invocations per {unit}")
        ax.set_xlabel(f"{'seconds' if unit == 's' else 'minutes'} from the experiment's start")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right")
    return save(figure, directory, name, "Issued vs planned invocations",
                "Invocations planned (trace) and issued (sent by the loader, whatever the answer) in each second "
                "(top) and each minute (bottom), by planned and sent time respectively.")


def _binned(runs: pd.DataFrame, time_column: str, width_s: int) -> pd.Series:
    return (runs[time_column] // width_s * width_s).astype("float64")


def lateness(data: ExperimentData, directory: Path, name: str) -> SavedFigure:
    runs = data.runs[data.runs["lateness_ms"].notna()]
    figure, axes = new_figure(1, 2, 3.8)
    over_time, distribution = axes[0, 0], axes[0, 1]
    width = bin_width_s(duration_s(data.runs))
    if runs.empty:
        no_data(over_time, "nothing was sent")
        no_data(distribution, "nothing was sent")
    else:
        bins = _binned(runs, "planned_s", width)
        grouped = runs["lateness_ms"].groupby(bins)
        for q, color, line_width in ((100, "#bdbdbd", 3.0), (99, "#e6550d", 1.2), (50, "#08519c", 1.2)):
            series = grouped.apply(lambda v, q=q: percentile(v, q))
            over_time.stairs(series.to_numpy(dtype="float64"),
                             np.append(series.index.to_numpy(), series.index[-1] + width),
                             label="max" if q == 100 else f"p{q}", color=color, linewidth=line_width, baseline=None)
        over_time.set_yscale("log")
        plain_ticks(over_time, "y")
        over_time.set_xlabel("planned time (s from the start)")
        over_time.set_ylabel("lateness (ms)")
        over_time.legend(loc="upper right")
        over_time.grid(True, which="major", alpha=0.3)
        values = runs["lateness_ms"].to_numpy(dtype="float64")
        cdf(distribution, values, "all sent invocations", color="#08519c")
        scale_for(distribution, [values])
        p99 = percentile(values, 99)
        if p99 is not None:
            distribution.axvline(p99, color="#e6550d", linewidth=0.8, linestyle="--", label=f"p99 {p99:.3g} ms")
        distribution.set_xlabel("lateness (ms): sent − planned")
        distribution.set_ylabel("share of invocations")
        distribution.legend(loc="lower right")
    return save(figure, directory, name, "Lateness",
                f"Left: lateness (sent − planned) per {bin_label(width)} bin of planned time: p50, p99 and "
                f"max (log scale; in a bin of fewer than 100 invocations, p99 is the max). Right: its cumulative "
                "distribution over all sent invocations.")


TIME_PANELS = (("e2e_latency_ms", "end-to-end latency (ms): activation end − sent"),
               ("duration_ms", "platform duration (ms), incl. init"),
               ("wait_time_ms", "wait time (ms)"),
               ("init_time_ms", "init time (ms), cold starts only"))


def latency_cdfs(data: ExperimentData, directory: Path, name: str) -> SavedFigure:
    figure, axes = new_figure(2, 2, 3.4)
    runs = data.runs
    for ax, (column, label) in zip(axes.flat, TIME_PANELS):
        drawn = []
        for index, group in enumerate(data.groups):
            values = floats(runs.loc[runs["group"] == group, column])
            if cdf(ax, values, f"{short(group)} (n={values.size})", color_of(index, group)):
                drawn.append(values)
        if not drawn:
            no_data(ax, f"no {label.split(' (')[0]} recorded")
            continue
        scale_for(ax, drawn)
        ax.set_xlabel(label)
        ax.set_ylabel("share of activations")
        ax.legend(loc="lower right", fontsize="x-small")
    return save(figure, directory, name, "Latency, duration, wait and init times",
                "Cumulative distributions per function (the most invoked ones; the rest grouped as 'other'). "
                "End-to-end latency runs from the loader sending the invocation to the activation's end as "
                "recorded by the platform (two clocks when they are on different hosts).")


def cold_starts(data: ExperimentData, directory: Path, name: str) -> SavedFigure:
    runs = data.runs[data.runs["cold_start"].notna() & data.runs["sent_s"].notna()]
    figure, axes = new_figure(1, 1, 3.2)
    ax = axes[0, 0]
    width = bin_width_s(duration_s(data.runs))
    if runs.empty:
        no_data(ax, "no activation record")
    else:
        cold = runs["cold_start"].astype("float64")
        share = cold.groupby(_binned(runs, "sent_s", width)).mean()
        edges = np.append(share.index.to_numpy(), share.index[-1] + width)
        ax.stairs(share.to_numpy(), edges, color="#3182bd", baseline=None,
                  label=f"{bin_label(width)} bins (overall {cold.mean():.1%})")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("sent time (s from the start)")
        ax.set_ylabel("cold-start share")
        ax.legend(loc="best")
        ax.grid(True, alpha=0.3)
    return save(figure, directory, name, "Cold starts over time",
                f"Share of activations (with a record) that were cold starts, per {bin_label(width)} bin of sent time.")


def statuses(data: ExperimentData, directory: Path, name: str) -> SavedFigure:
    runs = data.runs
    figure, axes = new_figure(1, 1, 3.4)
    ax = axes[0, 0]
    width = bin_width_s(duration_s(runs))
    if runs.empty:
        no_data(ax, "no runs")
    else:
        edges = _edges(duration_s(runs), width)
        bottom = np.zeros(edges.size - 1)
        order = [s for s in STATUS_COLORS if s in set(runs["status"])]
        for status in order:
            counts, _ = np.histogram(floats(runs.loc[runs["status"] == status, "planned_s"]), edges)
            top = bottom + counts
            ax.stairs(top, edges, baseline=bottom, fill=True, color=STATUS_COLORS[status],
                      label=f"{status} ({int(counts.sum())})")
            bottom = top
        ax.set_xlabel("planned time (s from the start)")
        ax.set_ylabel(f"invocations per {bin_label(width)}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
    return save(figure, directory, name, "Statuses over time",
                f"Terminal status of the invocations planned in each {bin_label(width)} bin: successes, "
                "throttled (429), failed activations, failed invokes, lost and cancelled invocations.")


def resources(data: ExperimentData, directory: Path, name: str) -> SavedFigure:
    runs = data.runs
    figure, axes = new_figure(1, 2, max(2.6, 0.45 * len(data.groups) + 1.4))
    for ax, column, label in ((axes[0, 0], "peak_memory_mib", "peak memory (MiB)"),
                              (axes[0, 1], "cpu_ms", "CPU time (ms)")):
        series = [(group, floats(runs.loc[runs["group"] == group, column])) for group in data.groups]
        series = [(g, v) for g, v in series if v.size]
        if not series:
            no_data(ax, "no resource samples (monitor disabled, or no sample in any window)")
            continue
        labels = [f"{short(g)} (n={v.size})" for g, v in series]
        parts = ax.boxplot([v for _, v in series], vert=False, whis=(5, 95), showfliers=True, patch_artist=True,
                           flierprops={"markersize": 2, "alpha": 0.4})
        ax.set_yticks(range(1, len(series) + 1), labels, fontsize="small")
        for patch, (group, _) in zip(parts["boxes"], series):
            patch.set_facecolor(color_of(data.groups.index(group), group))
            patch.set_alpha(0.6)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0, 1].tick_params(labelleft=False)
    return save(figure, directory, name, "Memory and CPU per function",
                "Per activation with monitor samples: the peak of the container's memory usage and the CPU time "
                "over the activation's samples. Boxes: quartiles and median; whiskers: p5 and p95; dots beyond.")


def timeline(data: ExperimentData, directory: Path, name: str) -> SavedFigure:
    samples = data.samples
    figure, axes = new_figure(1, 2, 3.4)
    if samples.empty:
        for ax in axes.flat:
            no_data(ax, "no activation with resource samples")
    for index, (label, own) in enumerate(samples.groupby("label", sort=False)):
        color = color_of(index, "")
        axes[0, 0].plot(own["t_ms"], own["memory_mib"], color=color, label=label, marker=".", markersize=3)
        axes[0, 1].plot(own["t_ms"], own["cpu_ms"], color=color, label=label, marker=".", markersize=3)
    if not samples.empty:
        for ax, label in ((axes[0, 0], "memory (MiB)"), (axes[0, 1], "CPU time since the first sample (ms)")):
            ax.set_xlabel("time since the first sample (ms)")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        axes[0, 0].legend(loc="lower right", fontsize="x-small")
    return save(figure, directory, name, "Resource timeline of chosen activations",
                "The monitor's samples of a few activations (chosen with --activation; by default the highest "
                "peak memory, the longest and the median duration): container memory and cumulative CPU time.")


#: The figures drawn only when some activation has resource samples.
RESOURCE_FIGURES = ("resources", "timeline")
#: The figures of one experiment, in report order: (file name stem, function).
EXPERIMENT_FIGURES = (("rate", rate), ("lateness", lateness), ("latency_cdfs", latency_cdfs),
                      ("cold_starts", cold_starts), ("statuses", statuses), ("resources", resources),
                      ("timeline", timeline))


def compared_cdfs(experiments: list[ExperimentData], directory: Path, name: str) -> SavedFigure:
    """Overlaid distributions of several experiments (all functions pooled), and their issue rates."""
    from .tables import DISTRIBUTIONS
    figure, axes = new_figure(4, 2, 3.0)
    panels = list(axes.flat)
    for ax, (column, label, unit) in zip(panels, DISTRIBUTIONS):
        drawn = []
        for index, data in enumerate(experiments):
            values = floats(data.runs[column])
            if cdf(ax, values, f"{short(data.label)} (n={values.size})", color_of(index, "")):
                drawn.append(values)
        if not drawn:
            no_data(ax, f"no {label} recorded")
            continue
        scale_for(ax, drawn)
        ax.set_xlabel(f"{label} ({unit})")
        ax.set_ylabel("share")
        ax.legend(loc="lower right", fontsize="x-small")
    ax = panels[-1]
    for index, data in enumerate(experiments):
        edges = _edges(duration_s(data.runs), 1)
        issued, _ = np.histogram(floats(data.runs["sent_s"]), edges)
        ax.stairs(issued, edges, color=color_of(index, ""), label=short(data.label))
    ax.set_xlabel("seconds from the experiment's start")
    ax.set_ylabel("issued per second")
    ax.legend(loc="upper right", fontsize="x-small")
    ax.grid(True, alpha=0.3)
    return save(figure, directory, name, "Experiments compared",
                "Cumulative distributions of each experiment, all functions pooled, and the invocations issued "
                "per second. The first experiment is the baseline of the tables below.")
