"""Functions described by a specification (synthetic YAML, FaaSProfiler JSON), and their source.

A :class:`FunctionSpec` says how a function is invoked: an arrival process over an
activity window, its input, its parameters (fixed or drawn as the generator's specs), and
optionally its duration and memory (for ``--map nearest`` or ``calibrated``).
:class:`SpecSource` turns a list of them into a :class:`loader.workloads.records.Source`;
every draw comes from a stream of (seed, purpose, function), so the workload is the same
for the same spec and seed.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from loader.generation.traces import as_text, below, draw
from loader.manifest import ParameterSpec

from . import arrivals, seeding
from .records import (
    Dropped,
    Invocation,
    Percentiles,
    Profile,
    SourceFile,
    SourceId,
    SourceReport,
    TraceFunction,
    WorkloadError,
)

STORAGE_PARAMETERS = ("incont", "object", "outcont")


class Process(str, enum.Enum):
    POISSON = "poisson"
    UNIFORM = "uniform"
    EQUIDISTANT = "equidistant"
    EXPLICIT = "explicit"
    PIECEWISE = "piecewise"


@dataclass(frozen=True, slots=True)
class ArrivalSpec:
    process: Process
    rate_per_s: float = 0.0
    #: explicit: the invocation times (µs from the start of the workload)
    offsets_us: tuple[int, ...] = ()
    #: piecewise: (start µs, rate per s) of each segment, starts increasing
    segments: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Parameter:
    """A fixed value (already text) or a drawn one."""

    name: str
    fixed: str = ""
    spec: ParameterSpec | None = None

    def value(self, rng: random.Random) -> str:
        return self.fixed if self.spec is None else as_text(draw(rng, self.spec))


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    source: SourceId
    where: str
    arrivals: ArrivalSpec
    window_us: tuple[int, int]
    action: str | None = None
    inputs: tuple[str, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    duration_ms: Percentiles | None = None
    memory_mb: Percentiles | None = None


def check_text(value: str, where: str) -> str:
    """A value that fits in a trace field: no tab, no line break."""
    if any(c in value for c in "\t\r\n"):
        raise WorkloadError(where, f"{value!r} holds a tab or a line break (not expressible in a trace line)")
    return value


def check_parameter_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not name.strip() or ":" in name:
        raise WorkloadError(where, f"parameter name {name!r} must be a non-empty string without ':'")
    if name in STORAGE_PARAMETERS:
        raise WorkloadError(where, f"parameter {name!r} is set by the loader (incont, object, outcont)")
    return check_text(name, where)


def fixed_text(value: object, where: str) -> str:
    """A fixed parameter value as the loader sends it (a string; JSON-like for numbers and booleans)."""
    import json
    if isinstance(value, str):
        return check_text(value, where)
    if isinstance(value, (bool, int, float)):
        return as_text(value)
    return check_text(json.dumps(value, sort_keys=True, separators=(",", ":")), where)


class SpecSource:
    """The invocations of specified functions over ``[0, span_us)``."""

    def __init__(self, name: str, specs: list[FunctionSpec], span_us: int, seed: int, files: list[SourceFile],
                 notes: dict | None = None):
        self.name, self.span_us, self.seed = name, span_us, seed
        self._specs = specs
        self._report = SourceReport(files=files, notes=dict(notes or {}))
        self._functions = []
        for key, spec in enumerate(specs):
            count = sum(1 for _ in self._offsets(spec))
            if count == 0:
                self._report.dropped.append(Dropped(spec.source, 0, "no invocation in its window"))
                continue
            profile = Profile(spec.duration_ms, spec.memory_mb, "spec" if spec.memory_mb else "unknown")
            self._functions.append(TraceFunction(spec.source, key, "spec", profile, count, spec.action, spec.where))
        self._report.counts.update({"functions_specified": len(specs), "functions_without_invocations":
                                    len(self._report.dropped)})

    def _offsets(self, spec: FunctionSpec) -> Iterator[int]:
        rng = seeding.stream(self.seed, "arrivals", spec.source)
        start, end = spec.window_us
        arrival = spec.arrivals
        if arrival.process is Process.EXPLICIT:
            return (t for t in arrival.offsets_us if start <= t < end)
        if arrival.process is Process.PIECEWISE:
            return (t for t in arrivals.piecewise(list(arrival.segments), end, rng) if t >= start)
        process = {Process.POISSON: arrivals.poisson, Process.UNIFORM: arrivals.uniform_gaps,
                   Process.EQUIDISTANT: arrivals.equidistant}[arrival.process]
        return process(arrival.rate_per_s, start, end, rng)

    def functions(self) -> list[TraceFunction]:
        return list(self._functions)

    def invocations(self, function: TraceFunction) -> Iterator[Invocation]:
        spec = self._specs[function.key]
        parameter_rng = seeding.stream(self.seed, "spec-parameters", spec.source)
        input_rng = seeding.stream(self.seed, "spec-input", spec.source)
        for offset_us in self._offsets(spec):
            values = tuple((p.name, p.value(parameter_rng)) for p in spec.parameters)
            input_object = spec.inputs[below(input_rng, len(spec.inputs))] if spec.inputs else None
            yield Invocation(offset_us, None, input_object, values)

    def close(self) -> None:
        pass

    def report(self) -> SourceReport:
        return self._report


def seconds_to_us(value: object, where: str, *, minimum: float = 0.0) -> int:
    """Seconds (a number) to integer µs, exactly for decimal literals."""
    from decimal import Decimal
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise WorkloadError(where, f"expected a number of seconds >= {minimum:g}, got {value!r}")
    return int((Decimal(repr(value)) * 1_000_000).to_integral_value())


def rate(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise WorkloadError(where, f"expected a rate (invocations per second) >= 0, got {value!r}")
    return float(value)

