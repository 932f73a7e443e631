"""Writing a report: gather each experiment, draw its figures, tabulate, render ``index.html``."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

from ..dataset import Dataset
from . import figures, html, tables
from .data import ExperimentData, ReportOptions, gather


class ReportError(ValueError):
    """The report cannot be made as asked (the message says why)."""


@dataclass(frozen=True)
class Report:
    index: Path
    files: tuple[Path, ...]      # every file written, index.html first


def _groups_note(data: ExperimentData) -> str:
    """Which functions are drawn apart, and which the "other" group holds (folded when long)."""
    apart = [g for g in data.groups if not g.startswith("other (")]
    note = f'<p class="note">Drawn apart: {escape(", ".join(apart) or "none")}.'
    if len(apart) == len(data.groups):
        return note + "</p>"
    rest = ", ".join(sorted(set(data.runs["function"]) - set(apart)))
    if len(rest) <= 300:
        return note + f" {escape(data.groups[-1])}: {escape(rest)}.</p>"
    return note + f'</p><details class="note"><summary>{escape(data.groups[-1])}</summary>{escape(rest)}</details>'


def _resources_note(data: ExperimentData) -> str:
    """Why an experiment has no resource samples at all."""
    if not ((data.experiment.config or {}).get("monitor") or {}).get("enabled", True):
        return '<p class="note">No resource samples: the monitor was off for this experiment (monitor:enabled).</p>'
    statuses = data.runs["resources_status"].value_counts()
    told = ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())) or "nothing"
    return (f'<p class="note">No resource samples in any activation; what the monitor answered: '
            f'{escape(told)} (runs.resources_status, docs/monitor.md).</p>')


def _experiment_section(data: ExperimentData, out_dir: Path, prefix: str, anchor: str,
                        written: list[Path]) -> str:
    drawn = {}
    sampled = bool(data.runs["samples"].fillna(0).gt(0).any())
    for stem, draw in figures.EXPERIMENT_FIGURES:
        if stem in figures.RESOURCE_FIGURES and not sampled:
            drawn[stem] = ""
            continue
        saved = draw(data, out_dir, prefix + stem)
        written += [out_dir / f"{saved.name}.png", out_dir / f"{saved.name}.svg"]
        drawn[stem] = html.figure_html(saved)
    per_function = tables.function_table(data.runs)
    functions_csv = out_dir / f"{prefix}functions.csv"
    per_function.to_csv(functions_csv, index=False, lineterminator="\n")
    written.append(functions_csv)
    config = data.experiment.config
    parts = [
        f'<section id="{anchor}"><h2>Experiment {escape(data.label)}</h2>',
        "<h3>Verdict</h3>", html.verdict_html(data), html.table_html(tables.fidelity_table(data)),
        "<h3>Configuration and provenance</h3>", html.facts_html(html.provenance_rows(data)),
        html.details("the loader's configuration, as stored with the experiment", config or {}),
    ]
    if "workload" in data.provenance:
        parts.append(html.details("workload.json (sources, options, seed, counts)", data.provenance["workload"]))
    if data.experiment.summary:
        parts.append(html.details("the loader's end-of-run summary", data.experiment.summary))
    parts += [
        "<h3>Injection: issued vs planned, lateness</h3>", drawn["rate"], drawn["lateness"],
        "<h3>Latency and platform times</h3>", _groups_note(data), drawn["latency_cdfs"],
        "<h3>Statuses and cold starts</h3>", drawn["statuses"], html.table_html(tables.status_table(data.runs)),
        drawn["cold_starts"],
        "<h3>Resources</h3>", drawn["resources"] or _resources_note(data), drawn["timeline"],
        "<h3>Per function</h3>",
        (f'<p class="note">Times in ms (nearest-rank percentiles), peak memory in MiB, CPU time in ms; also in '
         f'<a href="{escape(functions_csv.name)}">{escape(functions_csv.name)}</a>.</p>'),
        html.table_html(tables.function_display(per_function)), "</section>"]
    return "\n".join(parts)


def _comparison_section(experiments: list[ExperimentData], out_dir: Path, top: int, written: list[Path]) -> str:
    saved = figures.compared_cdfs(experiments, out_dir, "compare_cdfs")
    written += [out_dir / "compare_cdfs.png", out_dir / "compare_cdfs.svg"]
    metrics = tables.comparison_table(experiments)
    metrics_csv = out_dir / "comparison.csv"
    metrics.to_csv(metrics_csv, lineterminator="\n")
    written.append(metrics_csv)
    return "\n".join([
        '<section id="comparison"><h2>Comparison</h2>',
        f'<p class="note">Baseline: {escape(experiments[0].label)}. Differences are other − baseline.</p>',
        html.figure_html(saved),
        "<h3>Figures side by side</h3>", html.table_html(metrics.reset_index()),
        "<h3>Distributions against the baseline</h3>",
        ('<p class="note">Δ median with a 95% bootstrap interval (1,000 resamples, seeded); two-sample '
         'Kolmogorov-Smirnov statistic D and p-value (a small p: the distributions differ).</p>'),
        html.table_html(tables.distribution_tests(experiments)),
        "<h3>Functions in every experiment</h3>", html.table_html(tables.function_comparison(experiments, top)),
        "</section>"])


def write_report(dataset: Dataset, refs: list[str | int], out_dir: Path,
                 options: ReportOptions | None = None) -> Report:
    """Write ``out_dir/index.html`` and the figures (PNG, SVG) and tables (CSV) beside it."""
    options = options or ReportOptions()
    if not refs:
        raise ReportError("no experiment given")
    experiments = [gather(dataset, ref, options) for ref in refs]
    ids = [e.experiment.experiment_id for e in experiments]
    if len(set(ids)) != len(ids):
        raise ReportError("an experiment is named twice")
    if options.activations:
        known = set().union(*(set(e.runs["activation_id"].dropna()) for e in experiments))
        missing = [a for a in options.activations if a not in known]
        if missing:
            raise ReportError(f"activation(s) in none of the experiments: {', '.join(missing)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    body, toc = [], []
    several = len(experiments) > 1
    if several:
        body.append(_comparison_section(experiments, out_dir, options.top, written))
        toc.append(("comparison", "Comparison"))
    for number, data in enumerate(experiments, 1):
        anchor = f"experiment-{number}"
        body.append(_experiment_section(data, out_dir, f"e{number}_" if several else "", anchor, written))
        toc.append((anchor, f"Experiment {data.label}"))
    title = "FaaSLoad report: " + ", ".join(e.label for e in experiments)
    functions = {"function": "user/action pairs", "trace": "trace files", "action": "actions"}[options.group_by]
    footer = ("Made by python -m loader.report. Percentiles are nearest-rank "
              f"(a value that occurred). Functions are {functions}; the {options.top} most invoked are drawn apart.")
    index = out_dir / "index.html"
    part = index.with_name("index.html.part")
    part.write_text(html.page(title, toc, body, footer), encoding="utf-8")
    part.replace(index)
    return Report(index, (index, *written))
