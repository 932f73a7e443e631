"""``azure2021 --trace FILE``: the Azure Functions 2021 per-invocation trace (``app,func,end_timestamp,duration``).

Each row is one invocation that ended at ``end_timestamp`` (seconds from the trace's
start) after ``duration`` seconds.  Its start is ``end_timestamp - duration``, computed in
decimal arithmetic from the text and rounded to the microsecond (half to even), so
start times are exact to 1 µs whatever the number of digits.  Time 0 of the output is
the trace's time 0, or the earliest start when an invocation started before it (the
shift is in ``workload.json``).

The trace has no owner column (the application stands for it with ``--users owner``)
and no memory (``--default-memory-mb`` for ``--map calibrated``; ``nearest`` uses the
duration alone).  Each invocation keeps its own duration: ``--map calibrated`` replays
it exactly.  Rows are kept as two integer arrays per function (16 bytes a row).
"""

from __future__ import annotations

import array
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from . import tables
from .records import Invocation, Percentiles, Profile, SourceId, SourceReport, TraceFunction, WorkloadError

COLUMNS = ("app", "func", "end_timestamp", "duration")
PERCENTS = (0, 1, 25, 50, 75, 99, 100)
MICRO = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Azure2021Options:
    trace: Path


def seconds(row: dict[str, str], column: str, where: str) -> Decimal:
    text = row[column].strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise WorkloadError(where, f"column {column}: {text!r} is not a number of seconds") from None
    if not value.is_finite():
        raise WorkloadError(where, f"column {column}: {text!r} is not a finite number")
    return value


def to_us(value: Decimal) -> int:
    return int((value * MICRO).to_integral_value(ROUND_HALF_EVEN))


class Azure2021Source:
    """:class:`loader.workloads.records.Source` over an Azure 2021 invocation file."""

    name = "azure2021"

    def __init__(self, options: Azure2021Options):
        self.path = options.trace
        if not self.path.is_file():
            raise WorkloadError(f"--trace {self.path}", "not a file (expected the Azure 2021 CSV)")
        starts: dict[tuple[str, str], array.array] = {}
        durations: dict[tuple[str, str], array.array] = {}
        first_line: dict[tuple[str, str], int] = {}
        app_of: dict[str, tuple[str, int]] = {}
        rows = 0
        for line, row in tables.rows(self.path, COLUMNS, "an Azure Functions 2021 invocations file"):
            where = f"{self.path}:{line}"
            app, func = row["app"].strip(), row["func"].strip()
            if not app or not func:
                raise WorkloadError(where, "empty app or func")
            if func in app_of and app_of[func][0] != app:
                raise WorkloadError(where, f"func {func} already seen with another app on line {app_of[func][1]}")
            app_of.setdefault(func, (app, line))
            duration = seconds(row, "duration", where)
            if duration < 0:
                raise WorkloadError(where, f"column duration: negative duration {row['duration'].strip()}")
            key = (app, func)
            if key not in starts:
                starts[key], durations[key], first_line[key] = array.array("q"), array.array("q"), line
            starts[key].append(to_us(seconds(row, "end_timestamp", where) - duration))
            durations[key].append(to_us(duration))
            rows += 1
        if not rows:
            raise WorkloadError(str(self.path), "no invocation row")
        earliest = min(min(values) for values in starts.values())
        self.origin_us = min(0, earliest)
        self._invocations: list[tuple[np.ndarray, np.ndarray]] = []
        self._functions = []
        span = 0
        for index, key in enumerate(sorted(starts, key=first_line.__getitem__)):
            begin_us = np.frombuffer(starts.pop(key), dtype=np.int64) - self.origin_us
            length_us = np.frombuffer(durations.pop(key), dtype=np.int64)
            order = np.argsort(begin_us, kind="stable")
            begin_us, length_us = begin_us[order], length_us[order]
            self._invocations.append((begin_us, length_us))
            span = max(span, int(begin_us[-1]) + 1)
            milliseconds = length_us / 1000.0
            profile = Profile(Percentiles.of((p, float(np.percentile(milliseconds, p))) for p in PERCENTS),
                              None, "unknown: Azure 2021 has no memory")
            self._functions.append(TraceFunction(SourceId(key[0], key[0], key[1]), index, "unknown", profile,
                                                 len(begin_us), where=f"{self.path}:{first_line[key]}"))
        self.span_us = span
        self._report = SourceReport(counts={"rows": rows, "functions": len(self._functions),
                                            "apps": len({f.source.app for f in self._functions})},
                                    notes={"origin_shift_us": -self.origin_us, "owner": "the app (no owner column)"})

    def functions(self) -> list[TraceFunction]:
        return list(self._functions)

    def invocations(self, function: TraceFunction) -> Iterator[Invocation]:
        start, duration = self._invocations[function.key]
        for offset_us, duration_us in zip(start.tolist(), duration.tolist()):
            yield Invocation(offset_us, duration_us / 1000.0)

    def close(self) -> None:
        pass

    def report(self) -> SourceReport:
        self._report.files = [tables.sha256(self.path)]
        return self._report
