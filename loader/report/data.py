"""What a report shows of one experiment, gathered from the dataset into pandas frames.

:func:`gather` reads the experiment's runs, the per-run resource usage and the samples
of a few chosen activations, and derives what the figures and tables need: the function
of each run (``user/action``, or the action), the group it is drawn in (the ``top``
functions by invocations, the rest as one "other" group), times in seconds from the
experiment's start, peak memory in MiB and CPU time in ms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..dataset import Dataset, Experiment
from ..storage.summary import percentile as summary_percentile
from ..verdict import Fidelity, Thresholds, Verdict, fidelity_from_counts, judge

MIB = 2**20
#: How many activations the resource timeline shows when none are chosen.
DEFAULT_TIMELINE_ACTIVATIONS = 3


@dataclass(frozen=True)
class ReportOptions:
    top: int = 8                                  # functions drawn apart; the rest are grouped
    group_by: str = "function"                    # "function" (user/action), "trace" (file) or "action"
    activations: tuple[str, ...] = ()             # activation ids of the resource timeline


@dataclass(frozen=True)
class ExperimentData:
    experiment: Experiment
    runs: pd.DataFrame          # dataset.runs() + function, group, planned_s, sent_s, peak_memory_mib, cpu_ms
    groups: tuple[str, ...]     # the drawn groups, most invoked first ("other ..." last)
    samples: pd.DataFrame       # timeline samples: run_id, label, t_ms, memory_mib, cpu_ms
    verdict: Verdict
    stored_verdict: dict | None  # the verdict stored in experiments.summary by the loader, if any
    provenance: dict             # what the report could learn about the trace (workload.json)

    @property
    def label(self) -> str:
        return self.experiment.name


def percentile(values: np.ndarray | pd.Series, q: float) -> float | None:
    """Nearest-rank percentile (a value that occurred; ``q`` in 0..100), None when empty.

    The loader's summary uses the same definition, so the numbers agree.
    """
    value = summary_percentile(np.asarray(pd.Series(values).dropna(), dtype="float64"), q / 100)
    return None if value is None else float(value)


def floats(series: pd.Series) -> np.ndarray:
    """A nullable column as float64 without the missing values."""
    return series.dropna().to_numpy(dtype="float64")


def function_labels(runs: pd.DataFrame, group_by: str) -> pd.Series:
    if group_by == "action":
        return runs["action_name"].astype("string")
    if group_by == "trace":
        return runs["trace_name"].astype("string")
    if group_by != "function":
        raise ValueError(f"group_by must be 'function', 'trace' or 'action', not {group_by!r}")
    return (runs["user_name"] + "/" + runs["action_name"]).astype("string")


def top_groups(functions: pd.Series, top: int) -> tuple[pd.Series, tuple[str, ...]]:
    """Each run's group: its function when among the ``top`` most invoked, else "other (K functions)"."""
    counts = functions.value_counts()
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = [name for name, _ in ordered[:top]]
    rest = len(ordered) - len(kept)
    if rest <= 0:
        return functions.astype("string"), tuple(kept)
    other = f"other ({rest} function{'s' if rest > 1 else ''})"
    groups = functions.where(functions.isin(kept), other).astype("string")
    return groups, (*kept, other)


def measured_fidelity(runs: pd.DataFrame) -> Fidelity:
    """The verdict's figures, from the runs themselves."""
    lateness_ms = floats(runs["lateness_us"]) / 1000
    return fidelity_from_counts(planned=len(runs), issued=int(runs["sent_offset_us"].notna().sum()),
                                statuses={str(k): int(v) for k, v in runs["status"].value_counts().items()},
                                lateness_p99_ms=percentile(lateness_ms, 99),
                                lateness_max_ms=float(lateness_ms.max()) if lateness_ms.size else None)


def thresholds_of(config: dict | None) -> Thresholds:
    """The ``injection:fail_on`` thresholds stored with the experiment's configuration, if any."""
    fail_on = ((config or {}).get("injection") or {}).get("fail_on") or {}
    known = {k: float(v) for k, v in fail_on.items() if k in Thresholds.__dataclass_fields__ and v is not None}
    return Thresholds(**known)


def _choose_timeline(runs: pd.DataFrame, chosen: tuple[str, ...]) -> list[int]:
    """Run ids of the timeline: the chosen activations, else the highest peak memory, the
    longest and the median duration among runs with at least two samples."""
    if chosen:  # those of this experiment (the others may be in another experiment of the report)
        by_activation = runs.dropna(subset=["activation_id"]).set_index("activation_id")["run_id"]
        return [int(by_activation[a]) for a in chosen if a in by_activation.index]
    sampled = runs[runs["samples"].fillna(0) >= 2].sort_values("run_id")
    if sampled.empty:
        return []
    picks = [sampled.sort_values(["peak_memory_mib", "run_id"], ascending=[False, True])["run_id"].iloc[0]]
    with_duration = sampled[sampled["duration_ms"].notna()].sort_values(["duration_ms", "run_id"])
    if not with_duration.empty:
        picks.append(with_duration["run_id"].iloc[-1])
        picks.append(with_duration["run_id"].iloc[(len(with_duration) - 1) // 2])
    unique: list[int] = []
    for run_id in picks:
        if int(run_id) not in unique:
            unique.append(int(run_id))
    return unique[:DEFAULT_TIMELINE_ACTIVATIONS]


def _timeline(dataset: Dataset, experiment: Experiment, runs: pd.DataFrame, run_ids: list[int]) -> pd.DataFrame:
    columns = ["run_id", "label", "t_ms", "memory_mib", "cpu_ms"]
    if not run_ids:
        return pd.DataFrame({c: [] for c in columns})
    samples = dataset.resources(experiment, run_ids)
    info = runs.set_index("run_id")
    out = []
    for run_id in run_ids:
        own = samples[samples["run_id"] == run_id]
        if own.empty:
            continue
        first = own["sampled_at"].iloc[0]
        activation = info.at[run_id, "activation_id"]
        label = f"{info.at[run_id, 'function']} · {str(activation)[:12]}"
        out.append(pd.DataFrame({
            "run_id": run_id, "label": label,
            "t_ms": ((own["sampled_at"] - first) / pd.Timedelta(milliseconds=1)).to_numpy(dtype="float64"),
            "memory_mib": own["memory_bytes"].to_numpy(dtype="float64", na_value=np.nan) / MIB,
            "cpu_ms": (own["cpu_ns"] - own["cpu_ns"].min()).to_numpy(dtype="float64", na_value=np.nan) / 1e6}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame({c: [] for c in columns})


def read_provenance(config: dict | None) -> dict:
    """What the trace directory says of its origin: ``workload.json`` beside or above it
    (written by the workload importers), read now, at report time."""
    tracedir = ((config or {}).get("injection") or {}).get("tracedir")
    found: dict = {"tracedir": tracedir}
    if not tracedir:
        return found
    for candidate in (Path(tracedir) / "workload.json", Path(tracedir).parent / "workload.json"):
        if candidate.is_file():
            try:
                found["workload"] = json.loads(candidate.read_text())
                found["workload_path"] = str(candidate)
            except (OSError, ValueError) as exc:
                found["workload_error"] = f"{candidate}: {exc}"
            break
    return found


def gather(dataset: Dataset, ref: str | int, options: ReportOptions) -> ExperimentData:
    experiment = dataset.experiment(ref)
    runs = dataset.runs(experiment)
    usage = dataset.resource_usage(experiment)
    runs = runs.merge(usage[["run_id", "samples", "peak_memory_bytes", "cpu_ns"]], on="run_id", how="left")
    runs["function"] = function_labels(runs, options.group_by)
    runs["group"], groups = top_groups(runs["function"], options.top)
    runs["planned_s"] = runs["planned_offset_us"].to_numpy(dtype="float64", na_value=np.nan) / 1e6
    runs["sent_s"] = runs["sent_offset_us"].to_numpy(dtype="float64", na_value=np.nan) / 1e6
    runs["lateness_ms"] = runs["lateness_us"].to_numpy(dtype="float64", na_value=np.nan) / 1e3
    runs["peak_memory_mib"] = runs["peak_memory_bytes"].to_numpy(dtype="float64", na_value=np.nan) / MIB
    runs["cpu_ms"] = runs["cpu_ns"].to_numpy(dtype="float64", na_value=np.nan) / 1e6
    timeline = _timeline(dataset, experiment, runs, _choose_timeline(runs, options.activations))
    summary = experiment.summary or {}
    return ExperimentData(experiment=experiment, runs=runs, groups=groups, samples=timeline,
                          verdict=judge(measured_fidelity(runs), thresholds_of(experiment.config)),
                          stored_verdict=summary.get("verdict"), provenance=read_provenance(experiment.config))
