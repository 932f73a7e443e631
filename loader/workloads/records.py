"""The typed records of a workload conversion, and its error type.

A *source* (Azure 2019, Azure 2021, FaaSProfiler, synthetic) yields
:class:`TraceFunction` summaries first (small: what the mapping, sampling and user
naming need), then streams each function's :class:`Invocation` s on demand, in
non-decreasing ``offset_us`` order.  Times are integer microseconds from the start of
the source's timeline; durations are milliseconds, memory MB (the sources' units).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol


class WorkloadError(ValueError):
    """Bad input: ``str()`` names ``file:line``, ``file: key`` or the option."""

    def __init__(self, where: str, message: str):
        self.where, self.message = where, message
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True, slots=True)
class SourceId:
    """Where a trace function comes from (hashes for Azure, names for specs)."""

    owner: str
    app: str
    function: str


@dataclass(frozen=True, slots=True)
class Percentiles:
    """A distribution known by some of its percentiles: ``values[i]`` at ``percents[i]``, both increasing.

    Between two known percentiles the distribution is taken as linear (the inverse CDF is
    interpolated); below the first and above the last known percentile it is flat.
    (Compact on purpose: a full Azure day holds ~100,000 of them; sources share ``percents``.)
    """

    percents: tuple[float, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        percents, values = self.percents, self.values
        if not percents or len(percents) != len(values):
            raise ValueError("no percentile, or not one value per percent")
        if list(percents) != sorted(set(percents)) or not 0 <= percents[0] <= percents[-1] <= 100:
            raise ValueError(f"percents must increase within [0, 100], got {list(percents)}")
        if any(b < a for a, b in itertools.pairwise(values)):
            raise ValueError(f"values must not decrease with the percent, got {list(values)}")
        if values[0] < 0:
            raise ValueError(f"values must be >= 0, got {values[0]}")

    @classmethod
    def of(cls, points: Iterable[tuple[float, float]]) -> Percentiles:
        """From ``(percent, value)`` pairs."""
        pairs = tuple(points)
        return cls(tuple(float(p) for p, _ in pairs), tuple(float(v) for _, v in pairs))

    @classmethod
    def constant(cls, value: float) -> Percentiles:
        return cls((0.0, 100.0), (value, value))

    def scaled(self, factor: float) -> Percentiles:
        return Percentiles(self.percents, tuple(v * factor for v in self.values))

    def at(self, percent: float) -> float:
        """The value at ``percent`` (linear between known percentiles, flat outside)."""
        percents, values = self.percents, self.values
        index = bisect.bisect_left(percents, percent)
        if index == 0:
            return values[0]
        if index == len(percents):
            return values[-1]
        p0, p1 = percents[index - 1], percents[index]
        return values[index - 1] + (values[index] - values[index - 1]) * (percent - p0) / (p1 - p0)

    def draw(self, unit: float) -> float:
        """The value for a uniform draw ``unit`` in [0, 1) (inverse-CDF sampling)."""
        return self.at(100.0 * unit)

    @property
    def maximum(self) -> float:
        return self.values[-1]

    @property
    def p50(self) -> float:
        return self.at(50.0)

    @property
    def p75(self) -> float:
        return self.at(75.0)


@dataclass(frozen=True, slots=True)
class Profile:
    """What a trace function costs, as far as the source says: ``None`` when it does not say."""

    duration_ms: Percentiles | None
    memory_mb: Percentiles | None
    #: how ``memory_mb`` was obtained: ``function``, ``app split equally over N functions``, ...
    memory_origin: str = "function"


@dataclass(frozen=True, slots=True)
class TraceFunction:
    """One function of a source: one trace file of the output."""

    source: SourceId
    #: position in the source (row, instance, first line): the key for :meth:`Source.invocations`
    key: int
    trigger: str
    profile: Profile
    #: invocations in the selected time range, before rate scaling
    invocations: int
    #: the action the source names for it (FaaSProfiler ``application``, synthetic ``action``)
    action: str | None = None
    #: where it is defined, for messages (``file:line`` or ``file: key``)
    where: str = ""


@dataclass(frozen=True, slots=True)
class Invocation:
    """One planned invocation in source time."""

    offset_us: int
    #: the invocation's own duration when the source records it (Azure 2021)
    duration_ms: float | None = None
    input_object: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file the conversion read, with its SHA-256 (``workload.json``)."""

    path: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """A function of the source that gets no trace, and why."""

    source: SourceId
    invocations: int
    reason: str


@dataclass
class SourceReport:
    """What a source says about itself for ``workload.json``: files, counts, dropped functions."""

    files: list[SourceFile] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)
    dropped: list[Dropped] = field(default_factory=list)


class Source(Protocol):
    """A workload source: summaries first, then each function's invocations on demand."""

    name: str
    #: the length of the source's timeline (µs): the output spans it, time-scaled
    span_us: int

    def functions(self) -> list[TraceFunction]:
        """Every function with at least one invocation, in the source's order."""
        ...

    def invocations(self, function: TraceFunction) -> Iterator[Invocation]:
        """The function's invocations in non-decreasing ``offset_us`` (same output on every call)."""
        ...

    def report(self) -> SourceReport:
        ...

    def close(self) -> None:
        """Release open files (the conversion calls it once done)."""
        ...
