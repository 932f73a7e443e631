"""The platform's limits: clamping what a trace asks for, and the load each user puts on the platform.

* :class:`PlatformLimits`: memory and time limits of an action (OpenWhisk's defaults,
  which localwhisk shares; ``--max-memory-mb`` etc.), and the per-namespace throttles
  that the report compares each user's load with.
* :func:`calibrated_limits`: the memory and time limits of one calibrated action, and
  how much of its trace function's memory and duration fits (the rest is clamped and
  listed).
* :func:`clamp_manifest_limits`: a manifest action's own limits brought within the platform's.
* :class:`UserLoad`: from a user's invocations in time order (start, end), its peak
  invocations in any 60 s (whatever minute boundaries the platform counts by, since the
  injection may start at any second) and peak concurrency (invocations in flight at once).
* :class:`PeakConcurrency`: the most invocations in flight at once; per (user, action) it is how
  many containers of that action the user's replay keeps (one activation per container), from
  which the report sums the container pool a replay needs to never evict a warm container.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from .records import Percentiles, Profile

US_PER_MINUTE = 60_000_000
#: A calibrated action's memory limit is its largest ``memory_mb`` plus this (the container
#: holds a little more than the process's resident memory).
MEMORY_HEADROOM_MB = 32
#: A calibrated action's time limit is its longest ``duration_ms`` x this, plus the margin, and at
#: least OpenWhisk's default limit (a limit only stops runaways: a cold start under load must fit).
TIMEOUT_FACTOR = 1.25
TIMEOUT_MARGIN_MS = 1000
STD_TIMEOUT_MS = 60_000
#: memory of a localwhisk container running the calibrated action before it allocates anything
#: (15.9 MiB measured on the process backend: bench/workloads_replay.py)
DEFAULT_RUNTIME_MEMORY_MB = 16.0


@dataclass(frozen=True, slots=True)
class PlatformLimits:
    """Limits of the target platform (defaults: OpenWhisk's, also localwhisk's)."""

    min_memory_mb: int = 128
    max_memory_mb: int = 512
    min_duration_ms: int = 100
    max_duration_ms: int = 300_000
    #: invocations per namespace per minute before 429s (OpenWhisk: 60)
    actions_per_minute: int = 60
    #: invocations of one namespace in flight before 429s (OpenWhisk: 30)
    concurrent_actions: int = 30
    #: resident memory of the action runtime before the calibrated action allocates anything
    runtime_memory_mb: float = DEFAULT_RUNTIME_MEMORY_MB
    #: how long an idle container stays warm (OpenWhisk: 10 minutes), for the predicted cold starts
    keepalive_s: float = 600.0


@dataclass(frozen=True, slots=True)
class CalibratedLimits:
    memory_limit_mb: int
    timeout_ms: int
    #: largest ``memory_mb`` / ``duration_ms`` sent (draws above are lowered to it)
    memory_cap_mb: float
    duration_cap_ms: float
    clamps: tuple[str, ...]


def calibrated_limits(memory_mb: Percentiles, duration_ms: Percentiles, platform: PlatformLimits) -> CalibratedLimits:
    """Limits of one trace function's calibrated action; a clamp note for each thing that does not fit."""
    clamps = []
    memory_cap = float(platform.max_memory_mb - MEMORY_HEADROOM_MB)
    if memory_mb.maximum > memory_cap:
        clamps.append(f"memory up to {memory_mb.maximum:.1f} MB above the platform's {platform.max_memory_mb} MB "
                      f"limit: capped at {memory_cap:.0f} MB")
    else:
        memory_cap = memory_mb.maximum
    if memory_mb.p50 < platform.runtime_memory_mb:
        clamps.append(f"median memory {memory_mb.p50:.1f} MB below the runtime's own "
                      f"~{platform.runtime_memory_mb:g} MB: the action cannot use less")
    memory_limit = min(platform.max_memory_mb, max(platform.min_memory_mb, math.ceil(memory_cap) + MEMORY_HEADROOM_MB))
    duration_cap = (platform.max_duration_ms - TIMEOUT_MARGIN_MS) / TIMEOUT_FACTOR
    if duration_ms.maximum > duration_cap:
        clamps.append(f"duration up to {duration_ms.maximum:.0f} ms beyond the platform's {platform.max_duration_ms} ms "
                      f"limit: capped at {duration_cap:.0f} ms")
    else:
        duration_cap = duration_ms.maximum
    timeout = min(platform.max_duration_ms, max(platform.min_duration_ms, STD_TIMEOUT_MS,
                                                math.ceil(duration_cap * TIMEOUT_FACTOR) + TIMEOUT_MARGIN_MS))
    return CalibratedLimits(memory_limit, timeout, memory_cap, duration_cap, tuple(clamps))


def clamp_manifest_limits(memory_mb: int | None, timeout_ms: int | None,
                          platform: PlatformLimits) -> tuple[int | None, int | None, tuple[str, ...]]:
    """A manifest action's limits within the platform's, with a note per change."""
    clamps = []
    if memory_mb is not None and not platform.min_memory_mb <= memory_mb <= platform.max_memory_mb:
        clamped = min(platform.max_memory_mb, max(platform.min_memory_mb, memory_mb))
        clamps.append(f"memorySize {memory_mb} MB outside the platform's {platform.min_memory_mb}-"
                      f"{platform.max_memory_mb} MB: {clamped}")
        memory_mb = clamped
    if timeout_ms is not None and not platform.min_duration_ms <= timeout_ms <= platform.max_duration_ms:
        clamped = min(platform.max_duration_ms, max(platform.min_duration_ms, timeout_ms))
        clamps.append(f"timeout {timeout_ms} ms outside the platform's {platform.min_duration_ms}-"
                      f"{platform.max_duration_ms} ms: {clamped}")
        timeout_ms = clamped
    return memory_mb, timeout_ms, tuple(clamps)


def profile_memory(profile: Profile, default_memory_mb: float) -> Percentiles:
    return profile.memory_mb if profile.memory_mb is not None else Percentiles.constant(default_memory_mb)


@dataclass
class PeakConcurrency:
    """The most of ``(start_us, end_us)`` intervals, fed in start order, that overlap (an end at a
    start does not: the container is free again); None once an interval has no known end."""

    peak: int | None = 0
    _ends: list[int] = field(default_factory=list)

    def add(self, start_us: int, end_us: int | None) -> None:
        if end_us is None or self.peak is None:
            self.peak, self._ends = None, []
            return
        ends = self._ends
        while ends and ends[0] <= start_us:
            heapq.heappop(ends)
        heapq.heappush(ends, end_us)
        self.peak = max(self.peak, len(ends))

    def done(self) -> None:
        """Forget the running intervals (the peak stays)."""
        self._ends = []


@dataclass
class UserLoad:
    """Peak invocations in any 60 s and peak concurrency of one user, from ``(start_us, end_us)`` in start order."""

    #: most invocations whose starts fall within 60 s of each other
    peak_per_minute: int = 0
    #: when that window begins (µs of the output)
    peak_window_start_us: int = 0
    invocations: int = 0
    _window: deque[int] = field(default_factory=deque)
    _concurrency: PeakConcurrency = field(default_factory=PeakConcurrency)

    @property
    def peak_concurrency(self) -> int | None:
        """None when some invocation has no known duration."""
        return self._concurrency.peak

    def add(self, start_us: int, end_us: int | None) -> None:
        self.invocations += 1
        window = self._window
        window.append(start_us)
        while window[0] <= start_us - US_PER_MINUTE:
            window.popleft()
        if len(window) > self.peak_per_minute:
            self.peak_per_minute, self.peak_window_start_us = len(window), window[0]
        self._concurrency.add(start_us, end_us)

    def add_all(self, events: Iterable[tuple[int, int | None]]) -> UserLoad:
        for start_us, end_us in events:
            self.add(start_us, end_us)
        self.done()
        return self

    def done(self) -> None:
        """Forget the running window and intervals (the peaks stay)."""
        self._window = deque()
        self._concurrency.done()
