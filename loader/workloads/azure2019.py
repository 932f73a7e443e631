"""Azure Functions 2019 traces (Shahrad et al., USENIX ATC 2020), as published or preprocessed.

Two layouts of ``--trace DIR`` (docs/workloads.md):

* **published**, one day ``NN``: ``invocations_per_function_md.anon.dNN.csv`` (one row per
  function, one column per minute ``1..1440``), ``function_durations_percentiles.anon.dNN.csv``
  and ``app_memory_percentiles.anon.dNN.csv`` (memory per *application*, split over the
  app's functions by ``--app-memory``);
* **preprocessed** (vSwarm's triple): ``invocations.csv``, ``durations.csv`` and
  ``memory.csv`` with memory per *function* (``HashFunction`` first), used as given.

The invocations file is read twice and never held: a first pass checks every line and
keeps per function its byte offset and counts; a function's minutes are re-read from its
offset when its trace is written.  Memory is O(functions), not O(functions x minutes).
"""

from __future__ import annotations

import enum
import itertools
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import arrivals, seeding, tables
from .records import Dropped, Invocation, Percentiles, Profile, SourceId, SourceReport, TraceFunction, WorkloadError

ID_COLUMNS = ("HashOwner", "HashApp", "HashFunction", "Trigger")
DURATION_PERCENTS = (0, 1, 25, 50, 75, 99, 100)
DURATION_PERCENTS_F = tuple(float(p) for p in DURATION_PERCENTS)
DURATION_COLUMNS = ("HashFunction", "Average", *(f"percentile_Average_{p}" for p in DURATION_PERCENTS))
MEMORY_PERCENTS = (1, 5, 25, 50, 75, 95, 99, 100)
MEMORY_PERCENTS_F = tuple(float(p) for p in MEMORY_PERCENTS)
MEMORY_COLUMNS = ("HashApp", "AverageAllocatedMb", *(f"AverageAllocatedMb_pct{p}" for p in MEMORY_PERCENTS))
PUBLISHED = re.compile(r"invocations_per_function_md\.anon\.d(\d+)\.csv")
WHAT = "an Azure Functions 2019 invocations file"


class AppMemory(enum.StrEnum):
    """How an application's memory (published layout) is shared by its functions (``--app-memory``)."""

    EQUAL = "equal"   # each of the app's N functions gets 1/N of every percentile
    BUSY = "busy"     # in proportion to invocations x average duration over the day
    COPY = "copy"     # each function gets the app's whole memory (as InVitro and vSwarm)


@dataclass(frozen=True, slots=True)
class Azure2019Options:
    trace_dir: Path
    day: int | None = None
    minutes: tuple[int, int] | None = None
    granularity_s: int = 60
    iat: arrivals.Iat = arrivals.Iat.EXPONENTIAL
    phase_shift: bool = True
    rate_scale: Fraction = Fraction(1)
    functions: tuple[str, ...] = ()
    app_memory: AppMemory = AppMemory.EQUAL
    seed: int = 0


@dataclass(frozen=True, slots=True)
class _Row:
    offset: int
    line: int
    source: SourceId
    trigger: str
    selected: int
    day_total: int


@dataclass(frozen=True, slots=True)
class _Files:
    form: str
    day: int | None
    invocations: Path
    durations: Path
    memory: Path | None


def find_files(trace_dir: Path, day: int | None) -> _Files:
    """The files of ``--trace DIR`` for ``--day``; raises :class:`WorkloadError` naming what is missing."""
    if not trace_dir.is_dir():
        raise WorkloadError(f"--trace {trace_dir}", "not a directory (expected the Azure 2019 CSV files)")
    if (trace_dir / "invocations.csv").is_file():
        if day is not None:
            raise WorkloadError("--day", f"{trace_dir} holds the preprocessed files (invocations.csv): one day only")
        memory = trace_dir / "memory.csv"
        return _Files("preprocessed", None, trace_dir / "invocations.csv", _required(trace_dir / "durations.csv"),
                      memory if memory.is_file() else None)
    days = sorted(int(m.group(1)) for p in trace_dir.iterdir() if (m := PUBLISHED.fullmatch(p.name)))
    if not days:
        raise WorkloadError(f"--trace {trace_dir}", "no Azure 2019 files: expected invocations.csv, durations.csv, "
                                                    "memory.csv, or invocations_per_function_md.anon.dNN.csv ...")
    if day is None:
        if len(days) > 1:
            raise WorkloadError("--day", f"{trace_dir} holds days {', '.join(map(str, days))}: choose one")
        day = days[0]
    if day not in days:
        raise WorkloadError("--day", f"no invocations_per_function_md.anon.d{day:02d}.csv in {trace_dir} "
                                     f"(days present: {', '.join(map(str, days))})")
    memory = trace_dir / f"app_memory_percentiles.anon.d{day:02d}.csv"
    return _Files("published", day, trace_dir / f"invocations_per_function_md.anon.d{day:02d}.csv",
                  _required(trace_dir / f"function_durations_percentiles.anon.d{day:02d}.csv"),
                  memory if memory.is_file() else None)


def _required(path: Path) -> Path:
    if not path.is_file():
        raise WorkloadError(str(path), "missing (durations are needed to map functions and to compute concurrency)")
    return path


# --------------------------------------------------------------------------- the invocations file


def _minute_columns(path: Path, header: list[str], minutes: tuple[int, int] | None) -> tuple[list[int], int, int]:
    problem = tables.header_problem(header, ID_COLUMNS, WHAT)
    if problem:
        raise WorkloadError(f"{path}:1", problem)
    if tuple(header[:4]) != ID_COLUMNS:
        raise WorkloadError(f"{path}:1", f"expected the columns {','.join(ID_COLUMNS)} first, then one per minute")
    labels = []
    for column in header[4:]:
        if not column.isdigit():
            raise WorkloadError(f"{path}:1", f"column {column!r} is not a minute number")
        labels.append(int(column))
    if not labels:
        raise WorkloadError(f"{path}:1", "no minute column")
    if any(b != a + 1 for a, b in itertools.pairwise(labels)):
        raise WorkloadError(f"{path}:1", "minute columns are not consecutive")
    first, last = labels[0], labels[-1] + 1
    lo, hi = minutes if minutes is not None else (first, last)
    if not (first <= lo < hi <= last):
        raise WorkloadError("--minutes", f"{lo}:{hi} is not within the file's minutes {first}:{last} "
                                         f"(A:B keeps minutes A to B-1, as labelled in the header)")
    return labels, lo - first, hi - first


class _Counts:
    """Parses the minute counts of a row, fast (numpy) with a careful fallback that names the column."""

    def __init__(self, path: Path, labels: list[int]):
        self.path, self.labels = path, labels

    def parse(self, raw: bytes, line: int) -> tuple[list[str], np.ndarray]:
        if b'"' in raw:  # quoted fields: let the csv module split them
            import csv
            fields = next(csv.reader([raw.decode("utf-8", "replace")]))
            ids, tail = fields[:4], fields[4:]
            return self._careful(ids, tail, line)
        parts = raw.rstrip(b"\r\n").split(b",", 4)
        if len(parts) < 5:
            raise WorkloadError(f"{self.path}:{line}", f"{len(parts)} fields, the header has {4 + len(self.labels)}")
        try:
            ids = [p.decode("utf-8").strip() for p in parts[:4]]
        except UnicodeDecodeError:
            raise WorkloadError(f"{self.path}:{line}", "not UTF-8 text (is it a CSV file?)") from None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                counts = np.fromstring(parts[4], dtype=np.int64, sep=",")
            except (ValueError, DeprecationWarning):
                counts = None
        if counts is None or len(counts) != len(self.labels) or parts[4].count(b",") != len(self.labels) - 1:
            return self._careful(ids, parts[4].decode("utf-8", "replace").split(","), line)
        if len(counts) and counts.min() < 0:
            column = int(np.argmax(counts < 0))
            raise WorkloadError(f"{self.path}:{line}", f"column {self.labels[column]}: negative count "
                                                       f"{int(counts[column])}")
        return ids, counts

    def _careful(self, ids: list[str], tail: list[str], line: int) -> tuple[list[str], np.ndarray]:
        where = f"{self.path}:{line}"
        if len(tail) != len(self.labels):
            raise WorkloadError(where, f"{len(tail) + 4} fields, the header has {len(self.labels) + 4}")
        values = [tables.count(text, str(label), where) for text, label in zip(tail, self.labels)]
        return ids, np.array(values, dtype=np.int64)


def _first_pass(path: Path, minutes: tuple[int, int] | None) -> tuple[list[_Row], list[int], slice]:
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise WorkloadError(str(path), f"cannot read: {exc.strerror or exc}") from None
    with stream:
        raw_header = stream.readline()
        try:
            header = [h.strip() for h in raw_header.decode("utf-8").rstrip("\r\n").split(",")]
        except UnicodeDecodeError:
            raise WorkloadError(f"{path}:1", "not UTF-8 text (is it a CSV file?)") from None
        labels, lo, hi = _minute_columns(path, header, minutes)
        parser = _Counts(path, labels)
        offset = len(raw_header)
        for line, raw in enumerate(stream, start=2):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            ids, counts = parser.parse(raw, line)
            owner, app, function, trigger = ids
            if not (owner and app and function):
                raise WorkloadError(f"{path}:{line}", "empty HashOwner, HashApp or HashFunction")
            if function in seen:
                raise WorkloadError(f"{path}:{line}", f"HashFunction {function} already on line {seen[function]}")
            seen[function] = line
            rows.append(_Row(start, line, SourceId(owner, app, function), trigger or "unknown",
                             int(counts[lo:hi].sum()), int(counts.sum())))
    return rows, labels, slice(lo, hi)


# --------------------------------------------------------------------------- durations and memory


def _durations(path: Path, wanted: set[str]) -> tuple[dict[str, tuple[Percentiles, float]], int]:
    found: dict[str, tuple[Percentiles, float]] = {}
    first_line: dict[str, int] = {}
    unmatched = 0
    for line, row in tables.rows(path, DURATION_COLUMNS, "an Azure Functions 2019 durations file"):
        where = f"{path}:{line}"
        function = row["HashFunction"].strip()
        if function not in wanted:
            unmatched += 1
            continue
        if function in first_line:
            raise WorkloadError(where, f"HashFunction {function} already on line {first_line[function]}")
        first_line[function] = line
        values = tuple(tables.number(row, f"percentile_Average_{p}", where) for p in DURATION_PERCENTS)
        found[function] = (_percentiles(DURATION_PERCENTS_F, values, where), tables.number(row, "Average", where))
    return found, unmatched


def _memory(path: Path, key: str, wanted: set[str]) -> tuple[dict[str, Percentiles], int]:
    found: dict[str, Percentiles] = {}
    first_line: dict[str, int] = {}
    unmatched = 0
    columns = (key,) + MEMORY_COLUMNS[1:]
    for line, row in tables.rows(path, columns, "an Azure Functions 2019 memory file"):
        where = f"{path}:{line}"
        value = row[key].strip()
        if value not in wanted:
            unmatched += 1
            continue
        if value in first_line:
            raise WorkloadError(where, f"{key} {value} already on line {first_line[value]}")
        first_line[value] = line
        values = tuple(tables.number(row, f"AverageAllocatedMb_pct{p}", where) for p in MEMORY_PERCENTS)
        found[value] = _percentiles(MEMORY_PERCENTS_F, values, where)
    return found, unmatched


def _percentiles(percents: tuple[float, ...], values: tuple[float, ...], where: str) -> Percentiles:
    try:
        return Percentiles(percents, values)
    except ValueError as exc:
        raise WorkloadError(where, str(exc)) from None


# --------------------------------------------------------------------------- the source


class Azure2019Source:
    """:class:`loader.workloads.records.Source` over one day of Azure 2019 files."""

    name = "azure2019"

    def __init__(self, options: Azure2019Options):
        self.options = options
        self.files = find_files(options.trace_dir, options.day)
        rows, labels, self._columns = _first_pass(self.files.invocations, options.minutes)
        self._labels = labels[self._columns]
        self._width_us = options.granularity_s * arrivals.US_PER_S
        self.span_us = len(self._labels) * self._width_us
        self._parser = _Counts(self.files.invocations, labels)
        self._offsets = {row.line: row.offset for row in rows}
        self._stream: BinaryIO | None = None
        self._report = SourceReport()
        self._functions = self._profile(rows)

    def _selected(self, rows: list[_Row]) -> list[_Row]:
        if self.options.functions:
            chosen = []
            for prefix in self.options.functions:
                matches = [r for r in rows if r.source.function.lower().startswith(prefix.lower())]
                if not matches:
                    raise WorkloadError(f"--function {prefix}", f"unknown hash: no HashFunction of "
                                                                f"{self.files.invocations} starts with it")
                chosen.extend(matches)
            rows = sorted({r.line: r for r in chosen}.values(), key=lambda r: r.line)
        return rows

    def _profile(self, rows: list[_Row]) -> list[TraceFunction]:
        selected = self._selected(rows)
        active = [r for r in selected if r.selected > 0]
        wanted = {r.source.function for r in rows}
        durations, unmatched_durations = _durations(self.files.durations, wanted)
        memory, unmatched_memory, origin = self._memory(rows, durations)
        report = self._report
        functions = []
        for row in active:
            where = f"{self.files.invocations}:{row.line}"
            if row.source.function not in durations:
                report.dropped.append(Dropped(row.source, row.selected, f"no row in {self.files.durations.name}"))
                continue
            mem = memory.get(row.source.function)
            profile = Profile(durations[row.source.function][0], mem[0] if mem else None,
                              mem[1] if mem else origin)
            functions.append(TraceFunction(row.source, row.line, row.trigger, profile, row.selected, where=where))
        report.counts.update({"functions_in_file": len(rows), "functions_selected": len(selected),
                              "functions_without_invocations": len(selected) - len(active),
                              "functions_dropped": len(report.dropped), "duration_rows_unmatched": unmatched_durations,
                              "memory_rows_unmatched": unmatched_memory})
        report.notes.update({"layout": self.files.form, "day": self.files.day,
                             "minutes": [self._labels[0], self._labels[-1] + 1] if len(self._labels) else [],
                             "granularity_s": self.options.granularity_s,
                             "memory": origin if self.files.memory is None else
                             ("per function, as given" if self.files.form == "preprocessed"
                              else f"per application, split: {self.options.app_memory.value}")})
        return functions

    def _memory(self, rows: list[_Row], durations: dict[str, tuple[Percentiles, float]]
                ) -> tuple[dict[str, tuple[Percentiles, str]], int, str]:
        path = self.files.memory
        if path is None:
            return {}, 0, "unknown: no memory file"
        if self.files.form == "preprocessed":
            found, unmatched = _memory(path, "HashFunction", {r.source.function for r in rows})
            return {f: (p, "function") for f, p in found.items()}, unmatched, f"unknown: no row in {path.name}"
        apps: dict[str, list[_Row]] = {}
        for row in rows:
            apps.setdefault(row.source.app, []).append(row)
        found, unmatched = _memory(path, "HashApp", set(apps))
        result = {}
        mode = self.options.app_memory
        for app, app_memory in found.items():
            members = apps[app]
            weights = {r.source.function: 1.0 for r in members}
            if mode is AppMemory.BUSY:
                busy = {r.source.function: r.day_total * durations[r.source.function][1]
                        for r in members if r.source.function in durations}
                if sum(busy.values()) > 0:
                    weights = {f: busy.get(f, 0.0) for f in weights}
            total = sum(weights.values())
            for function, weight in weights.items():
                share = 1.0 if mode is AppMemory.COPY else weight / total
                origin = (f"app memory copied ({len(members)} functions)" if mode is AppMemory.COPY
                          else f"app memory split {mode.value} over {len(members)} functions: {share:.6g}")
                result[function] = (app_memory.scaled(share), origin)
        return result, unmatched, f"unknown: no row for the app in {path.name}"

    def functions(self) -> list[TraceFunction]:
        return list(self._functions)

    def counts(self, function: TraceFunction) -> np.ndarray:
        """The function's counts over the selected columns, as in the file."""
        if self._stream is None:
            self._stream = open(self.files.invocations, "rb")
        self._stream.seek(self._offsets[function.key])
        raw = self._stream.readline()
        return self._parser.parse(raw, function.key)[1][self._columns]

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def invocations(self, function: TraceFunction) -> Iterator[Invocation]:
        options = self.options
        counts = self.counts(function)
        if options.rate_scale != 1:
            rate_rng = seeding.stream(options.seed, "rate", function.source)
            counts = np.array([arrivals.scale_count(c, options.rate_scale, rate_rng) for c in counts.tolist()],
                              dtype=np.int64)
        rng = seeding.stream(options.seed, "arrivals", function.source)
        phase = 0
        if options.phase_shift and options.iat is arrivals.Iat.EQUIDISTANT:
            phase = arrivals.draw_phase(seeding.stream(options.seed, "phase", function.source))
        columns = np.flatnonzero(counts).tolist()
        pairs = zip(columns, counts[columns].tolist())
        for offset_us in arrivals.spread_columns(pairs, self._width_us, options.iat, rng, phase):
            yield Invocation(offset_us)

    def report(self) -> SourceReport:
        self._report.files = [tables.sha256(p) for p in (self.files.invocations, self.files.durations,
                                                          self.files.memory) if p is not None]
        return self._report
