"""The report's tables, as pandas DataFrames: per function, statuses, and the comparison of experiments."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .data import ExperimentData, floats, percentile

#: The times of the per-function table and of the comparison: (runs column, label).
TIMES = (("e2e_latency_ms", "e2e latency"), ("duration_ms", "duration"), ("wait_time_ms", "wait time"),
         ("init_time_ms", "init time"))
PERCENTILES = (50, 95, 99)
#: Distributions compared between experiments: (runs column, label, unit).
DISTRIBUTIONS = (("lateness_ms", "lateness", "ms"), ("e2e_latency_ms", "e2e latency", "ms"),
                 ("duration_ms", "duration", "ms"), ("wait_time_ms", "wait time", "ms"),
                 ("init_time_ms", "init time", "ms"), ("peak_memory_mib", "peak memory", "MiB"),
                 ("cpu_ms", "CPU time", "ms"))
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_MAX_VALUES = 5_000
BOOTSTRAP_BATCH = 100
SEED = 20240601


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), digits)


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def function_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per function, most invoked first: invocations, success share, cold starts,
    p50/p95/p99 of each time (ms), peak memory (MiB), CPU time (ms)."""
    rows = []
    for function, own in runs.groupby("function", sort=False, observed=True):
        row: dict[str, object] = {"function": function, "invocations": len(own),
                                  "success_share": round(float((own["status"] == "success").mean()), 4),
                                  "cold_starts": int(own["cold_start"].fillna(False).sum())}
        for column, _ in TIMES:
            values = floats(own[column])
            for q in PERCENTILES:
                row[f"{column[:-3]}_p{q}_ms"] = _round(percentile(values, q))
        memory = floats(own["peak_memory_mib"])
        row["peak_memory_p50_mib"] = _round(percentile(memory, 50), 1)
        row["peak_memory_max_mib"] = _round(memory.max() if memory.size else None, 1)
        row["cpu_p50_ms"] = _round(percentile(floats(own["cpu_ms"]), 50))
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(["invocations", "function"], ascending=[False, True]).reset_index(drop=True)


def status_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs per status, their share, and one reason given (of the earliest such run)."""
    rows = []
    for status, own in runs.sort_values("run_id").groupby("status", sort=True, observed=True):
        reasons = own["status_reason"].dropna()
        rows.append({"status": status, "runs": len(own), "share": percent(len(own) / len(runs)),
                     "example reason": reasons.iloc[0] if len(reasons) else ""})
    return pd.DataFrame(rows, columns=["status", "runs", "share", "example reason"])


def percent(share: float | None, digits: int = 2) -> str | None:
    return None if share is None else f"{100 * share:.{digits}f} %"


def fidelity_table(data: ExperimentData) -> pd.DataFrame:
    """The verdict's figures with their thresholds (``injection:fail_on``) and whether each is within."""
    verdict = data.verdict
    fidelity = verdict.fidelity
    breached = {b.key for b in verdict.breaches}
    figures = (("issued_share", percent(fidelity.issued_share), f"{fidelity.issued} of {fidelity.planned} planned"),
               ("lateness_p99_ms", fidelity.lateness_p99_ms, "nearest rank"),
               ("lateness_max_ms", fidelity.lateness_max_ms, ""),
               ("throttled_share", percent(fidelity.throttled_share), f"{fidelity.throttled} answered 429"),
               ("error_share", percent(fidelity.error_share), f"{fidelity.errors} failed activations or invokes"),
               ("lost_share", percent(fidelity.lost_share), f"{fidelity.lost} without a record"))
    rows = []
    for key, value, note in figures:
        threshold = getattr(verdict.thresholds, key)
        shown_threshold = percent(threshold) if threshold is not None and key.endswith("_share") else threshold
        judged = "" if threshold is None else ("BREACHED" if key in breached else "within")
        rows.append({"figure": key, "measured": value, "fail_on": shown_threshold, "judged": judged, "detail": note})
    return pd.DataFrame(rows)


def function_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`function_table` for the page: grouped two-level headers, shares in percent."""
    if table.empty:
        return table
    columns: dict[tuple[str, str], Any] = {
        ("function", ""): table["function"], ("runs", ""): table["invocations"],
        ("success", ""): [percent(v, 1) for v in table["success_share"]], ("cold starts", ""): table["cold_starts"]}
    for column, label in TIMES:
        for q in PERCENTILES:
            columns[(f"{label} (ms)", f"p{q}")] = table[f"{column[:-3]}_p{q}_ms"]
    if table["peak_memory_max_mib"].notna().any() or table["cpu_p50_ms"].notna().any():  # else no samples
        columns[("peak memory (MiB)", "p50")] = table["peak_memory_p50_mib"]
        columns[("peak memory (MiB)", "max")] = table["peak_memory_max_mib"]
        columns[("CPU time (ms)", "p50")] = table["cpu_p50_ms"]
    shown = pd.DataFrame({k: list(v) for k, v in columns.items()})
    shown.columns = pd.MultiIndex.from_tuples(columns.keys())
    return shown


# --------------------------------------------------------------------------- several experiments

def _summary_metrics(data: ExperimentData) -> dict[str, float | None]:
    runs, fidelity = data.runs, data.verdict.fidelity
    with_record = runs["cold_start"].dropna()

    def pct(share: float | None) -> float | None:
        return None if share is None else 100 * share

    metrics: dict[str, float | None] = {
        "planned invocations": fidelity.planned,
        "issued (% of planned)": pct(fidelity.issued_share),
        "throttled (% of planned)": pct(fidelity.throttled_share),
        "errors (% of planned)": pct(fidelity.error_share),
        "lost (% of planned)": pct(fidelity.lost_share),
        "cold starts (% of records)": pct(float(with_record.mean())) if len(with_record) else None,
    }
    for column, label, unit in DISTRIBUTIONS:
        values = floats(runs[column])
        for q in PERCENTILES:
            metrics[f"{label} p{q} ({unit})"] = percentile(values, q)
    return metrics


def comparison_table(experiments: list[ExperimentData]) -> pd.DataFrame:
    """Metrics per experiment (columns) and, for each after the first, the difference to the first
    (shares in percent, so their differences are in points)."""
    base_name = experiments[0].label
    columns: dict[str, list] = {}
    metrics = [_summary_metrics(e) for e in experiments]
    names = list(metrics[0])
    for data, values in zip(experiments, metrics):
        columns[data.label] = [_round(values[n], 4) for n in names]
    for data, values in zip(experiments[1:], metrics[1:]):
        deltas: list[float | None] = []
        relative: list[float | None] = []
        for name in names:
            a, b = metrics[0][name], values[name]
            if a is None or b is None:
                deltas.append(None)
                relative.append(None)
                continue
            deltas.append(_round(b - a, 4))
            relative.append(_round(100 * (b - a) / a, 1) if a else None)
        columns[f"{data.label} − {base_name}"] = deltas
        columns[f"{data.label} vs {base_name} (%)"] = relative
    return pd.DataFrame(columns, index=pd.Index(names, name="metric"))


def _bootstrap_median_difference(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile-bootstrap interval of median(b) − median(a) (each side subsampled to
    :data:`BOOTSTRAP_MAX_VALUES` first, for speed)."""
    def capped(values: np.ndarray) -> np.ndarray:
        return values if values.size <= BOOTSTRAP_MAX_VALUES else rng.choice(values, BOOTSTRAP_MAX_VALUES, replace=False)

    def medians(values: np.ndarray) -> np.ndarray:
        batches = [np.median(rng.choice(values, (BOOTSTRAP_BATCH, values.size)), axis=1)
                   for _ in range(BOOTSTRAP_RESAMPLES // BOOTSTRAP_BATCH)]
        return np.concatenate(batches)

    a, b = capped(a), capped(b)
    low, high = np.percentile(medians(b) - medians(a), [2.5, 97.5])
    return float(low), float(high)


def distribution_tests(experiments: list[ExperimentData]) -> pd.DataFrame:
    """Each distribution of each experiment against the first: medians, their difference with a
    95% bootstrap interval (seeded), and the two-sample Kolmogorov-Smirnov statistic and p-value."""
    base = experiments[0]
    rows = []
    for other in experiments[1:]:
        rng = np.random.default_rng(SEED)
        for column, label, unit in DISTRIBUTIONS:
            a, b = floats(base.runs[column]), floats(other.runs[column])
            row: dict[str, object] = {"experiment": other.label, "distribution": f"{label} ({unit})",
                                      f"n {base.label}": a.size, "n": b.size}
            if a.size and b.size:
                low, high = _bootstrap_median_difference(a, b, rng)
                test = scipy_stats.ks_2samp(a, b)
                row.update({"median base": _round(float(np.median(a))), "median": _round(float(np.median(b))),
                            "Δ median": _round(float(np.median(b) - np.median(a))),
                            "Δ median 95% CI": f"[{_short(low)}, {_short(high)}]",
                            "KS D": _round(float(test.statistic), 3), "KS p": float(f"{test.pvalue:.3g}")})
            rows.append(row)
    table = pd.DataFrame(rows)
    return table.rename(columns={"median base": f"median {base.label}", "n": "n (other)"})


def function_comparison(experiments: list[ExperimentData], top: int) -> pd.DataFrame:
    """For the ``top`` functions (by invocations over all experiments) found in every experiment:
    invocations and p50 of e2e latency and duration in each."""
    common = set(experiments[0].runs["function"])
    totals = experiments[0].runs["function"].value_counts()
    for data in experiments[1:]:
        common &= set(data.runs["function"])
        totals = totals.add(data.runs["function"].value_counts(), fill_value=0)
    ordered = sorted((f for f in common), key=lambda f: (-totals[f], f))[:top]
    rows = []
    for function in ordered:
        row: dict[tuple[str, str], object] = {("function", ""): function}
        for data in experiments:
            own = data.runs[data.runs["function"] == function]
            row[(data.label, "runs")] = len(own)
            row[(data.label, "e2e p50 (ms)")] = _round(percentile(floats(own["e2e_latency_ms"]), 50))
            row[(data.label, "duration p50 (ms)")] = _round(percentile(floats(own["duration_ms"]), 50))
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table
