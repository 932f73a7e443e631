"""When invocations happen: spreading counts within a column, arrival processes, time and rate scales.

All times are integer microseconds.  Randomness comes only from the ``random.Random``
stream passed in (see :mod:`loader.workloads.seeding`), so the same stream gives the same
times.

**Within a column** (a minute of Azure 2019, or a second with ``--granularity second``),
the ``c`` invocations of the column are placed in ``[start, start + width)``, so per-column
counts stay exactly the source's:

* ``equidistant``: ``start + (k + phase) * width / c`` for ``k = 0..c-1``; ``phase`` in
  [0, 1) is drawn once per function, so functions with one invocation per minute do not
  all fire at the minute's first microsecond (with ``phase = 0``, as InVitro, they do);
* ``uniform``: ``c + 1`` gaps drawn uniformly in [0, 1), scaled so that they fill the
  column; the invocations are the first ``c`` partial sums (inter-arrival times uniform,
  conditioned on the count: more regular than Poisson);
* ``exponential``: the same with exponential gaps, which is a Poisson process conditioned
  on the column's count (the times are ``c`` sorted uniform draws in the column).

**Processes** (FaaSProfiler and synthetic specs) run over a window ``[start, end)``:
``poisson`` (exponential gaps of mean ``1/rate``), ``uniform`` (gaps uniform in
``[0, 2/rate]``), ``equidistant`` (gaps of ``1/rate`` after a random phase in
``[0, 1/rate)``), ``piecewise`` (Poisson whose rate is constant per segment).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable, Iterator
from fractions import Fraction

US_PER_S = 1_000_000
PHASE_STEPS = 1_000_000


class Iat(enum.StrEnum):
    """How the invocations of one column are spread (``--iat``)."""

    EQUIDISTANT = "equidistant"
    UNIFORM = "uniform"
    EXPONENTIAL = "exponential"


def draw_phase(rng: random.Random) -> int:
    """A phase in [0, 1) as an integer number of millionths."""
    return int(rng.random() * PHASE_STEPS)


def spread(count: int, start_us: int, width_us: int, iat: Iat, rng: random.Random, phase: int = 0) -> list[int]:
    """``count`` sorted times in ``[start_us, start_us + width_us)``."""
    if count <= 0:
        return []
    if iat is Iat.EQUIDISTANT:
        denominator = count * PHASE_STEPS
        return [start_us + ((k * PHASE_STEPS + phase) * width_us) // denominator for k in range(count)]
    if iat is Iat.UNIFORM:
        gaps = [rng.random() for _ in range(count + 1)]
    else:
        gaps = [-math.log(1.0 - rng.random()) for _ in range(count + 1)]
    total = math.fsum(gaps)
    last = start_us + width_us - 1
    if total <= 0.0:  # every gap drew 0 (practically never): all at the start
        return [start_us] * count
    times, cumulative = [], 0.0
    for gap in gaps[:-1]:
        cumulative += gap
        times.append(min(start_us + int(cumulative / total * width_us), last))
    return times


def spread_columns(columns: Iterable[tuple[int, int]], width_us: int, iat: Iat, rng: random.Random,
                   phase: int = 0) -> Iterator[int]:
    """Every invocation of ``(column index, count)`` pairs in increasing column order (column ``i`` starts at
    ``i * width_us``); columns without invocations may be left out (they draw nothing)."""
    for index, count in columns:
        yield from spread(count, index * width_us, width_us, iat, rng, phase)


def scale_count(count: int, factor: Fraction, rng: random.Random) -> int:
    """``--rate-scale``: each invocation kept ``floor(factor)`` times, plus once with probability ``frac(factor)``."""
    whole = factor.numerator // factor.denominator
    fraction = factor - whole
    if fraction == 0 or count == 0:
        return count * whole
    threshold = float(fraction)
    return count * whole + sum(1 for _ in range(count) if rng.random() < threshold)


def parse_factor(text: str, option: str) -> Fraction:
    """A positive decimal factor given on the command line, exactly (``0.05``, ``2``, ``1/3``)."""
    try:
        factor = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{option}: {text!r} is not a number") from None
    if factor <= 0:
        raise ValueError(f"{option}: {text!r} must be > 0")
    return factor


def scale_time(offset_us: int, factor: Fraction) -> int:
    """``--time-scale``: an offset multiplied by ``factor``, floored to the microsecond."""
    return offset_us * factor.numerator // factor.denominator


# --------------------------------------------------------------------------- processes over a window


def poisson(rate_per_s: float, start_us: int, end_us: int, rng: random.Random) -> Iterator[int]:
    """A Poisson process of ``rate_per_s`` over ``[start_us, end_us)``."""
    if rate_per_s <= 0:
        return
    mean_us = US_PER_S / rate_per_s
    now = float(start_us)
    while True:
        now += -math.log(1.0 - rng.random()) * mean_us
        if now >= end_us:
            return
        yield int(now)


def uniform_gaps(rate_per_s: float, start_us: int, end_us: int, rng: random.Random) -> Iterator[int]:
    """Gaps uniform in ``[0, 2/rate]`` (mean ``1/rate``) over ``[start_us, end_us)``."""
    if rate_per_s <= 0:
        return
    span_us = 2 * US_PER_S / rate_per_s
    now = float(start_us)
    while True:
        now += rng.random() * span_us
        if now >= end_us:
            return
        yield int(now)


def equidistant(rate_per_s: float, start_us: int, end_us: int, rng: random.Random) -> Iterator[int]:
    """One every ``1/rate`` s over ``[start_us, end_us)``, the first after a random phase in ``[0, 1/rate)``."""
    if rate_per_s <= 0:
        return
    period = Fraction(US_PER_S) / Fraction(rate_per_s)
    phase = Fraction(draw_phase(rng), PHASE_STEPS) * period
    k = 0
    while True:
        now = start_us + math.floor(phase + k * period)
        if now >= end_us:
            return
        yield now
        k += 1


def piecewise(segments: list[tuple[int, float]], end_us: int, rng: random.Random) -> Iterator[int]:
    """Poisson with rate ``rate`` from each segment's ``start_us`` to the next one's (the last to ``end_us``)."""
    bounds = [start for start, _ in segments[1:]] + [end_us]
    for (start_us, rate_per_s), stop_us in zip(segments, bounds):
        yield from poisson(rate_per_s, start_us, min(stop_us, end_us), rng)
