"""One conversion: a source's functions → users, actions, trace files, manifest, mapping, report.

Functions are processed user by user, in name order.  For each function the source's
invocations are streamed into its trace file (time-scaled, with the line's input and
parameters); then the user's invocations are streamed again, merged in time order, to
measure its peak invocations per minute and peak concurrency.  Nothing holds more than
one user's in-flight invocations.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from loader.generation.traces import EXTENSIONS, as_text, below, draw

from . import arrivals, limits, mapping, naming, sampling, seeding
from .cold_starts import ColdStarts
from .draws import Draws, units
from .limits import CalibratedLimits, PeakConcurrency, PlatformLimits, UserLoad
from .mapping import ActionTarget, MapMode, MemoryPick
from .output import OutputDir, format_number
from .records import Percentiles, Source, TraceFunction, WorkloadError

CALIBRATED_PREFIX = "cal_"
US_PER_MS = 1000


@dataclass(frozen=True, slots=True)
class ConversionOptions:
    out: Path
    seed: int = 0
    map_mode: MapMode = MapMode.NEAREST
    manifest: Path = mapping.DEFAULT_MANIFEST
    users_by: naming.UsersBy = naming.UsersBy.OWNER
    time_scale: Fraction = Fraction(1)
    sample: int | None = None
    platform: PlatformLimits = field(default_factory=PlatformLimits)
    default_memory_mb: float = 128.0
    cpu_share: float = 1.0
    memory: MemoryPick = MemoryPick.MEDIAN
    inputs: int = 10
    input_object: str = "none"
    calibrated_runtime: str = "python:3.11"
    draws: Draws = Draws.STRATIFIED
    end_early_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Plan:
    """What one trace function becomes."""

    function: TraceFunction
    user: str
    action: str
    trace_name: str
    target: ActionTarget | None
    distance: float | None
    calibrated: CalibratedLimits | None
    clamps: tuple[str, ...]


@dataclass
class Totals:
    traces: int = 0
    invocations: int = 0
    thinned_away: list[str] = field(default_factory=list)
    loads: dict[str, UserLoad] = field(default_factory=dict)
    per_minute: dict[int, int] = field(default_factory=dict)
    last_offset_us: int = 0
    #: summed durations of the invocations whose duration is known (µs)
    busy_us: int = 0
    #: per (user, action): the most of its invocations in flight at once (its containers)
    containers: dict[tuple[str, str], int | None] = field(default_factory=dict)


def warn(message: str) -> None:
    print(f"loader.workloads: warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- planning


def plan(source: Source, functions: list[TraceFunction], options: ConversionOptions,
         population: list[TraceFunction]) -> tuple[list[Plan], dict[str, dict]]:
    """Users, actions and trace names of ``functions``, and the manifest entries they need."""
    namer = naming.Namer(population)
    targets = mapping.read_targets(options.manifest) if options.map_mode is not MapMode.CALIBRATED else []
    assignments = mapping.assign(functions, options.map_mode, targets, options.manifest, warn)
    plans, actions, names = [], {}, set()
    for function, (target, distance) in zip(functions, assignments):
        user = namer.user(function, options.users_by)
        short = namer.function(function.source, function.where)
        calibrated = None
        if target is None:
            action = naming.check_name(CALIBRATED_PREFIX + short, function.where)
            assert function.profile.duration_ms is not None
            calibrated = limits.calibrated_limits(limits.profile_memory(function.profile, options.default_memory_mb),
                                                  function.profile.duration_ms, options.platform)
            actions[action] = calibrated_entry(calibrated, options.calibrated_runtime, options.end_early_ms)
            clamps = calibrated.clamps
        else:
            action = target.name
            entry, clamps = target_entry(target, options.platform)
            actions[action] = entry
        trace_name = f"{user}-{action}-{short}"
        if trace_name in names:
            raise WorkloadError(function.where, f"two functions would write the same trace {trace_name}")
        names.add(trace_name)
        plans.append(Plan(function, user, action, trace_name, target, distance, calibrated, clamps))
    for item in plans:
        for clamp in item.clamps:
            warn(f"{item.trace_name}: {clamp}")
    return plans, actions


def calibrated_entry(calibrated: CalibratedLimits, runtime: str, end_early_ms: float = 0.0) -> dict:
    """The manifest entry of a calibrated action; its timeout is also a default parameter, from
    which the action finds when the platform started a run, and so is ``end_early_ms``
    (``--end-early-ms``, when not 0): how much before its duration it returns
    (actions/calibrated/replay.py)."""
    inputs: dict = {"timeout_ms": calibrated.timeout_ms}
    if end_early_ms:
        inputs["end_early_ms"] = round(end_early_ms, 3)
    return {"function": str(mapping.CALIBRATED_CODE), "runtime": runtime, "main": "main",
            "limits": {"memorySize": calibrated.memory_limit_mb, "timeout": calibrated.timeout_ms, "logSize": 1},
            "inputs": inputs}


def target_entry(target: ActionTarget, platform: PlatformLimits) -> tuple[dict, tuple[str, ...]]:
    row = target.row
    memory_mb, timeout_ms, clamps = limits.clamp_manifest_limits(row.memory_mb, row.timeout_ms, platform)
    entry: dict = {"docker": row.image} if row.image else {"function": row.code_path}
    if row.runtime and not row.image:
        entry["runtime"] = row.runtime
    if row.main:
        entry["main"] = row.main
    limit_values = {"memorySize": memory_mb, "timeout": timeout_ms, "logSize": row.log_size_mb,
                    "concurrentActivations": row.concurrency}
    if any(v is not None for v in limit_values.values()):
        entry["limits"] = {k: v for k, v in limit_values.items() if v is not None}
    annotations: dict = {}
    if row.input_kind:
        annotations["input_kind"] = row.input_kind
    if row.parameter_specs:
        annotations["parameters"] = [dict(spec) for spec in row.parameter_specs]
    if target.duration_ms is not None:
        annotations["profile"] = {"duration_ms": target.duration_ms, "memory_mb": target.memory_mb}
    if annotations:
        entry["annotations"] = annotations
    return entry, clamps


# --------------------------------------------------------------------------- lines


@dataclass(frozen=True, slots=True)
class Counts:
    """How many units a function's lines draw from the strata (its invocations not predicted
    to be cold starts): durations (invocations without their own) and memory."""

    durations: int
    memory: int


class ColdFlags:
    """Whether each invocation of a function, in order, is a predicted cold start (left out of
    the strata, :mod:`.cold_starts`), from its own duration or the function's median."""

    def __init__(self, item: Plan, options: ConversionOptions):
        profile = item.function.profile.duration_ms
        self.median_us = round(profile.p50 * US_PER_MS) if profile is not None else 0
        self.time_scale = options.time_scale
        self.predictor = ColdStarts(round(options.platform.keepalive_s * 1e6))

    def __call__(self, invocation) -> bool:
        start = arrivals.scale_time(invocation.offset_us, self.time_scale)
        own = invocation.duration_ms
        return self.predictor.cold(start, self.median_us if own is None else round(own * US_PER_MS))


def counts(source: Source, item: Plan, options: ConversionOptions) -> Counts | None:
    """``None`` unless stratified draws need them: then one first pass over the function's invocations."""
    if options.draws is Draws.IID:
        return None
    draws_memory = item.calibrated is not None and options.memory is MemoryPick.DRAW
    if item.function.profile.duration_ms is None and not draws_memory:
        return None
    durations = memory = 0
    cold = ColdFlags(item, options)
    for invocation in source.invocations(item.function):
        warm = not cold(invocation)
        memory += warm
        durations += warm and invocation.duration_ms is None
    return Counts(durations, memory)


class Lines:
    """The lines of one planned trace: input and parameters per invocation, all seeded per function.

    ``counts`` (from :func:`counts`) makes the duration and memory draws stratified.
    """

    def __init__(self, item: Plan, options: ConversionOptions, counted: Counts | None = None):
        self.item, self.options, self.counted = item, options, counted
        self.memory = limits.profile_memory(item.function.profile, options.default_memory_mb)

    def _mode(self) -> Draws:
        return Draws.IID if self.counted is None else self.options.draws

    def _durations(self) -> Callable[[float | None, bool], float | None]:
        profile = self.item.function.profile.duration_ms
        rng = seeding.stream(self.options.seed, "duration", self.item.function.source)
        unit = (units(rng, self._mode(), self.counted.durations if self.counted else None)
                if profile is not None else None)

        def duration(own: float | None, cold: bool) -> float | None:
            if own is not None:
                return own
            return profile.draw(unit(cold)) if profile is not None and unit is not None else None
        return duration

    def events(self, source: Source) -> Iterator[tuple[int, int | None]]:
        """``(start_us, end_us)`` in output time (durations are not time-scaled)."""
        duration, cold = self._durations(), ColdFlags(self.item, self.options)
        for invocation in source.invocations(self.item.function):
            start = arrivals.scale_time(invocation.offset_us, self.options.time_scale)
            value = duration(invocation.duration_ms, cold(invocation))
            yield start, (None if value is None else start + round(value * US_PER_MS))

    def lines(self, source: Source) -> Iterator[tuple[int, str]]:
        item, options = self.item, self.options
        function = item.function
        duration, cold = self._durations(), ColdFlags(item, options)
        memory_rng = seeding.stream(options.seed, "memory", function.source)
        memory_unit = (units(memory_rng, self._mode(), self.counted.memory if self.counted else None)
                       if item.calibrated is not None and options.memory is MemoryPick.DRAW
                       else lambda outside: memory_rng.random())
        parameter_rng = seeding.stream(options.seed, "parameters", function.source)
        input_rng = seeding.stream(options.seed, "input", function.source)
        for invocation in source.invocations(function):
            start = arrivals.scale_time(invocation.offset_us, options.time_scale)
            parameters = list(invocation.parameters)
            input_object = invocation.input_object or options.input_object
            outside = cold(invocation)
            if item.calibrated is not None:
                value = duration(invocation.duration_ms, outside)
                assert value is not None
                memory_mb = (self.memory.p50 if options.memory is MemoryPick.MEDIAN
                              else self.memory.draw(memory_unit(outside)))
                parameters += [("memory_mb", format_number(min(memory_mb, item.calibrated.memory_cap_mb))),
                               ("duration_ms", format_number(min(value, item.calibrated.duration_cap_ms))),
                               ("cpu_share", format_number(options.cpu_share))]
            else:
                assert item.target is not None
                kind = item.target.row.input_kind
                if kind:
                    input_object = f"{1 + below(input_rng, options.inputs)}.{EXTENSIONS[kind]}"
                given = {name for name, _ in parameters}
                parameters += [(spec.name, as_text(draw(parameter_rng, spec)))
                               for spec in item.target.specs if spec.name not in given]
            yield start, "\t".join([input_object, *(f"{k}:{v}" for k, v in parameters)])


# --------------------------------------------------------------------------- writing


def write(source: Source, plans: list[Plan], options: ConversionOptions, out: OutputDir) -> Totals:
    totals = Totals()
    by_user: dict[str, list[Plan]] = {}
    for item in plans:
        by_user.setdefault(item.user, []).append(item)
    for user in sorted(by_user):
        items = sorted(by_user[user], key=lambda p: p.trace_name)
        written = []
        counted: dict[str, Counts | None] = {}
        for item in items:
            counted[item.trace_name] = counts(source, item, options)
            count = out.write_trace(item.trace_name, Lines(item, options, counted[item.trace_name]).lines(source))
            if count == 0:
                totals.thinned_away.append(item.trace_name)
                continue
            written.append(item)
            totals.traces += 1
            totals.invocations += count
            out.mapping.writerow(mapping_row(item, count))
        if written:
            load = UserLoad()
            per_action = {item.action: PeakConcurrency() for item in written}
            for start, end, action in heapq.merge(*(_with_action(item, Lines(item, options,
                                                                             counted[item.trace_name]).events(source))
                                                    for item in written),
                                                  key=lambda event: event[0]):
                load.add(start, end)
                per_action[action].add(start, end)
                if end is not None:
                    totals.busy_us += end - start
                minute = start // limits.US_PER_MINUTE
                totals.per_minute[minute] = totals.per_minute.get(minute, 0) + 1
                totals.last_offset_us = max(totals.last_offset_us, start)
            load.done()
            totals.loads[user] = load
            for action, concurrency in per_action.items():
                totals.containers[(user, action)] = concurrency.peak
    return totals


def _with_action(item: Plan, events: Iterator[tuple[int, int | None]]) -> Iterator[tuple[int, int | None, str]]:
    for start, end in events:
        yield start, end, item.action


def _p(percentiles: Percentiles | None, percent: float) -> str:
    return format_number(percentiles.at(percent)) if percentiles is not None else ""


def mapping_row(item: Plan, count: int) -> list:
    function, target = item.function, item.target
    profile = function.profile
    return [item.trace_name, item.user, item.action, function.source.owner, function.source.app,
            function.source.function, count, function.trigger, _p(profile.duration_ms, 50),
            _p(profile.duration_ms, 75), _p(profile.memory_mb, 50), _p(profile.memory_mb, 75),
            profile.memory_origin if profile.memory_mb is not None else "unknown",
            format_number(target.duration_ms if target else None), format_number(target.memory_mb if target else None),
            format_number(item.distance, 6), item.calibrated.memory_limit_mb if item.calibrated else "",
            item.calibrated.timeout_ms if item.calibrated else "", "; ".join(item.clamps)]


def select(source: Source, options: ConversionOptions) -> tuple[list[TraceFunction], list[TraceFunction], dict | None]:
    """The source's functions, and those kept by ``--sample`` with its report."""
    population = source.functions()
    if not population:
        raise WorkloadError(source.name, "no function with an invocation in the selected range")
    if options.sample is None:
        return population, population, None
    chosen = sampling.sample(population, options.sample, options.seed)
    return population, chosen, sampling.report(population, chosen, source.span_us / 60e6)



# --------------------------------------------------------------------------- the whole conversion


MANIFEST_HEADER = """\
# wskdeploy manifest of the actions the traces of this directory invoke, written by
# `python -m loader.workloads` (workload.json says from what). Deploy into every trace user's
# namespace with: python -m loader.deploy actions --manifest THIS_FILE --config CONFIG
"""


def convert(source: Source, options: ConversionOptions, recorded: dict) -> dict:
    """Write the whole output directory; the ``workload.json`` document."""
    population, functions, sample_report = select(source, options)
    out = OutputDir(options.out)
    try:
        plans, actions = plan(source, functions, options, population)
        totals = write(source, plans, options, out)
        thinned = set(totals.thinned_away)
        written = [p for p in plans if p.trace_name not in thinned]
        out.write_manifest({p.action: actions[p.action] for p in written}, MANIFEST_HEADER)
        report = source.report()
        out.write_dropped([(d.source.owner, d.source.app, d.source.function, d.invocations, d.reason)
                           for d in report.dropped])
        memory_mb = {p.action: actions[p.action].get("limits", {}).get("memorySize") for p in written}
        document = workload_document(source, options, recorded, report, population, functions, sample_report,
                                     written, totals, memory_mb)
        out.write_json("workload.json", document)
        out.commit()
    except BaseException:
        out.abort()
        raise
    finally:
        source.close()
    return document


#: OpenWhisk's memory limit of an action that sets none (MB).
DEFAULT_ACTION_MEMORY_MB = 256


def pool_memory_mb(containers: dict[tuple[str, str], int | None], memory_mb: dict[str, int | None]) -> int | None:
    """The container pool a replay needs so that no warm container is ever evicted: per (user,
    action), its peak concurrency × the action's memory limit (OpenWhisk's 256 MB when it sets
    none), summed; None when some duration is unknown."""
    total = 0
    for (_, action), peak in containers.items():
        if peak is None:
            return None
        limit = memory_mb.get(action)
        total += peak * (DEFAULT_ACTION_MEMORY_MB if limit is None else limit)
    return total


def load_report(totals: Totals, platform: PlatformLimits, span_us: int, memory_mb: dict[str, int | None]) -> dict:
    users = {user: {"invocations": load.invocations, "peak_per_minute": load.peak_per_minute,
                    "peak_window_start_s": load.peak_window_start_us / 1e6, "peak_concurrency": load.peak_concurrency}
             for user, load in sorted(totals.loads.items())}
    concurrencies = [load.peak_concurrency for load in totals.loads.values() if load.peak_concurrency is not None]
    return {
        "platform": {"actions_per_minute": platform.actions_per_minute,
                     "concurrent_actions": platform.concurrent_actions, "min_memory_mb": platform.min_memory_mb,
                     "max_memory_mb": platform.max_memory_mb, "min_duration_ms": platform.min_duration_ms,
                     "max_duration_ms": platform.max_duration_ms, "runtime_memory_mb": platform.runtime_memory_mb,
                     "keepalive_s": platform.keepalive_s},
        "max_user_peak_per_minute": max((load.peak_per_minute for load in totals.loads.values()), default=0),
        "max_user_peak_concurrency": max(concurrencies, default=None),
        "users_over_actions_per_minute": sum(1 for load in totals.loads.values()
                                             if load.peak_per_minute > platform.actions_per_minute),
        "users_over_concurrent_actions": sum(1 for c in concurrencies if c > platform.concurrent_actions),
        "users_without_durations": sum(1 for load in totals.loads.values() if load.peak_concurrency is None),
        "overall_peak_per_minute": max(totals.per_minute.values(), default=0),
        "mean_in_flight": round(totals.busy_us / span_us, 3) if span_us else None,
        "pool_memory_mb": pool_memory_mb(totals.containers, memory_mb),
        "users": users,
    }


def workload_document(source: Source, options: ConversionOptions, recorded: dict, report, population, functions,
                      sample_report, written: list[Plan], totals: Totals, memory_mb: dict[str, int | None]) -> dict:
    return {
        "format": "faasload-workload/1",
        "source": source.name,
        "files": [{"path": f.path, "sha256": f.sha256, "size_bytes": f.size_bytes} for f in report.files],
        "options": recorded,
        "seed": options.seed,
        "source_report": {"counts": report.counts, "notes": report.notes},
        "counts": {"functions": len(population), "sampled": len(functions), "traces": totals.traces,
                   "thinned_away": len(totals.thinned_away), "dropped": len(report.dropped),
                   "users": len({p.user for p in written}), "actions": len({p.action for p in written}),
                   "invocations": totals.invocations},
        "duration_s": arrivals.scale_time(source.span_us, options.time_scale) / 1e6,
        "last_invocation_s": totals.last_offset_us / 1e6,
        "sample": sample_report,
        "clamped": {p.trace_name: list(p.clamps) for p in written if p.clamps},
        "limits": load_report(totals, options.platform, arrivals.scale_time(source.span_us, options.time_scale),
                              memory_mb),
    }
