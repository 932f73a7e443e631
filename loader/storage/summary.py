"""Counts and distributions of one run: the progress line and the end-of-run summary.

Thread-safe accumulation (invoker and completion threads report here); the summary is
a JSON-able dict, stored in ``experiments.summary`` and printed by :func:`format_summary`.
"""

from __future__ import annotations

import threading
from array import array
from collections import Counter
from dataclasses import dataclass, field

import numpy

from loader.storage.rows import RunStatus

#: ``runs.resources_status`` of a row written before the monitor's answer came (loader.monitor_client).
PENDING_RESOURCES = "pending"


def percentile(values, fraction: float) -> float | None:
    """Nearest-rank percentile (numpy's ``inverted_cdf``) of ``values``; None when empty."""
    if len(values) == 0:
        return None
    return numpy.percentile(numpy.asarray(values), fraction * 100, method="inverted_cdf").item()


def _distribution(values, scale: float = 1.0, digits: int = 3) -> dict | None:
    if len(values) == 0:
        return None
    array = numpy.asarray(values, dtype=float)
    p50, p90, p99 = numpy.percentile(array, (50, 90, 99), method="inverted_cdf")
    def show(v) -> float:
        return round(float(v) / scale, digits)
    return {"p50": show(p50), "p90": show(p90), "p99": show(p99), "max": show(array.max()), "mean": show(array.mean())}


@dataclass
class _Function:
    runs: int = 0
    statuses: Counter = field(default_factory=Counter)
    cold_starts: int = 0
    with_record: int = 0
    durations_ms: array = field(default_factory=lambda: array("q"))
    peak_memory_bytes: int | None = None


class RunStats:
    """What happened so far; ``late_threshold_us`` decides what counts as late."""

    def __init__(self, late_threshold_us: int, planned_total: int | None = None):
        self.late_threshold_us = late_threshold_us
        self.planned_total = planned_total
        self._lock = threading.Lock()
        self.issued = 0
        self.unsent = 0   # never sent because of a stop, and left without a row (a mode that resumes them)
        self.late = 0
        self.statuses: Counter = Counter()
        self.lateness_us = array("q")
        self.wait_times_ms = array("q")
        self.cold_starts = 0
        self.with_record = 0
        self.resources: Counter = Counter()  # resources_status -> runs (monitor enabled only)
        self.asked_again: Counter = Counter()  # activations answered unknown, asked once more: "known"/"unknown" then
        self.functions: dict[str, _Function] = {}

    def record_sent(self, lateness_us: int) -> None:
        with self._lock:
            self.issued += 1
            self.lateness_us.append(lateness_us)
            if lateness_us > self.late_threshold_us:
                self.late += 1

    def record_unsent(self) -> None:
        with self._lock:
            self.unsent += 1

    def record_terminal(self, action: str, status: RunStatus, *, duration_ms: int | None = None,
                        wait_time_ms: int | None = None, cold_start: bool | None = None,
                        peak_memory_bytes: int | None = None, has_record: bool = False,
                        resources_status: str | None = None) -> None:
        with self._lock:
            self.statuses[status] += 1
            if resources_status is not None:
                self.resources[resources_status] += 1
            function = self.functions.setdefault(action, _Function())
            function.runs += 1
            function.statuses[status] += 1
            if has_record:
                self.with_record += 1
                function.with_record += 1
                if cold_start:
                    self.cold_starts += 1
                    function.cold_starts += 1
                if duration_ms is not None:
                    function.durations_ms.append(duration_ms)
                if wait_time_ms is not None:
                    self.wait_times_ms.append(wait_time_ms)
            if peak_memory_bytes is not None:
                function.peak_memory_bytes = max(function.peak_memory_bytes or 0, peak_memory_bytes)

    def record_late_resources(self, action: str, resources_status: str, peak_memory_bytes: int | None) -> None:
        """A run counted with resources ``pending`` got the monitor's answer."""
        with self._lock:
            self.resources[PENDING_RESOURCES] -= 1
            if not self.resources[PENDING_RESOURCES]:
                del self.resources[PENDING_RESOURCES]
            self.resources[resources_status] += 1
            function = self.functions.setdefault(action, _Function())
            if peak_memory_bytes is not None:
                function.peak_memory_bytes = max(function.peak_memory_bytes or 0, peak_memory_bytes)

    def record_asked_again_answer(self, *, known: bool) -> None:
        """An activation the monitor answered ``unknown`` was asked once more: whether it knew it then."""
        with self._lock:
            self.asked_again["known" if known else "unknown"] += 1

    @property
    def completed(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.error)

    def progress_line(self, pending: int) -> str:
        planned = f" of {self.planned_total}" if self.planned_total is not None else ""
        return (f"progress: {self.issued} issued{planned}, {self.completed} completed, {pending} pending, "
                f"{self.late} late (> {self.late_threshold_us / 1000:g} ms), {self.errors} errors")

    def summary(self) -> dict:
        with self._lock:
            durations = [d for f in self.functions.values() for d in f.durations_ms]
            return {
                "planned": self.planned_total,
                "issued": self.issued,
                **({"unsent": self.unsent} if self.unsent else {}),
                "statuses": {s.value: n for s, n in sorted(self.statuses.items(), key=lambda x: x[0].value)},
                "late": self.late,
                "late_threshold_ms": self.late_threshold_us / 1000,
                "lateness_ms": _distribution(self.lateness_us, 1000.0),
                "duration_ms": _distribution(durations),
                "wait_time_ms": _distribution(self.wait_times_ms),
                "cold_start_share": round(self.cold_starts / self.with_record, 4) if self.with_record else None,
                "resources": dict(sorted(self.resources.items())) if self.resources else None,
                **({"resources_asked_again": dict(sorted(self.asked_again.items()))} if self.asked_again else {}),
                "functions": {name: self._function_summary(f) for name, f in sorted(self.functions.items())},
            }

    @staticmethod
    def _function_summary(f: _Function) -> dict:
        durations = list(f.durations_ms)
        return {
            "runs": f.runs,
            "statuses": {s.value: n for s, n in sorted(f.statuses.items(), key=lambda x: x[0].value)},
            "cold_starts": f.cold_starts,
            "mean_duration_ms": round(sum(durations) / len(durations), 1) if durations else None,
            "p50_duration_ms": percentile(durations, 0.5),
            "peak_memory_bytes": f.peak_memory_bytes,
        }


def _dist_text(dist: dict | None, unit: str) -> str:
    if not dist:
        return "n/a"
    return f"p50 {dist['p50']:g} {unit}, p99 {dist['p99']:g} {unit}, max {dist['max']:g} {unit}"


def format_summary(summary: dict) -> str:
    """The summary as a few human lines."""
    statuses = ", ".join(f"{name} {n}" for name, n in summary["statuses"].items()) or "none"
    share = summary["cold_start_share"]
    lines = [
        f"invocations: {summary['issued']} issued"
        + (f" of {summary['planned']} planned" if summary.get("planned") is not None else "")
        + (f" ({summary['unsent']} handed out but not sent because of the stop: no row, left for the resume)"
           if summary.get("unsent") else ""),
        f"statuses: {statuses}",
        f"late (> {summary['late_threshold_ms']:g} ms): {summary['late']}; "
        f"lateness {_dist_text(summary['lateness_ms'], 'ms')}",
        f"duration {_dist_text(summary['duration_ms'], 'ms')}; wait time {_dist_text(summary['wait_time_ms'], 'ms')}",
        f"cold starts: {'n/a' if share is None else f'{share:.1%}'} of completed activations",
    ]
    senders = summary.get("senders")
    if senders:
        lines.append(f"requests in flight: peak {senders['peak_in_flight']} (sum over {senders['processes']} sender "
                     f"processes; cap {senders['max_in_flight']}), {senders['held_back']} held back by the cap, "
                     f"at most {senders.get('peak_held_ahead', 0)} held ahead of their planned time, "
                     f"{senders['retries']} retries, {senders['connections_opened']} connections opened")
    resources = summary.get("resources")
    if resources:
        missing = sum(n for status, n in resources.items() if status != "ok")
        lines.append(f"monitor resources: {', '.join(f'{s} {n}' for s, n in resources.items())}"
                     f" ({missing} activations without samples)")
    asked_again = summary.get("resources_asked_again")
    if asked_again:
        lines.append(f"monitor answers unknown, asked again: {sum(asked_again.values())}, known then "
                     f"{asked_again.get('known', 0)} (their notices reached the monitor after the first query)")
    for error in summary.get("trace_errors") or ():
        lost = "?" if error.get("lost") is None else error["lost"]
        lines.append(f"trace {error['trace']} ended early ({lost} planned invocations not sent): {error['error']}")
    if summary.get("store_errors"):
        lines.append(f"runs the database refused (status store_error): {len(summary['store_errors'])}")
    if summary.get("failure"):
        lines.append(f"stopped by an internal failure: {summary['failure']}")
    lines.append("per function:")
    for name, f in summary["functions"].items():
        memory = f["peak_memory_bytes"]
        lines.append(f"  {name}: {f['runs']} runs ({', '.join(f'{s} {n}' for s, n in f['statuses'].items())}), "
                     f"{f['cold_starts']} cold, mean {f['mean_duration_ms']} ms, p50 {f['p50_duration_ms']} ms"
                     + (f", peak memory {memory / 2**20:.1f} MiB" if memory else ""))
    return "\n".join(lines)
