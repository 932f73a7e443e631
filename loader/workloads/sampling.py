"""``--sample N``: a seeded subset of trace functions that keeps the distribution of invocation rates.

The functions are sorted by invocation count (ties by identity), cut into ``N`` strata of
(nearly) equal size, and one function is drawn uniformly from each stratum with its own
seeded stream.  So the sample has one function per ``1/N``-quantile of the rate
distribution: the busy few and the idle many are both represented.

How far the sample is from the population is reported with the Wasserstein (earth
mover's) distance between the two distributions of per-function invocation rate (per
minute), median duration (ms) and median memory (MB), each also relative to the
population's mean, and between the decimal logarithms of the values (heavy tails: a rate
of 1 or 10 per minute matters as much as one of 1,000 or 10,000); values below 0.001 count
as 0.001.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from loader.generation.traces import below

from . import seeding
from .records import TraceFunction


def _key(function: TraceFunction) -> tuple:
    source = function.source
    return (function.invocations, source.owner, source.app, source.function)


def sample(functions: list[TraceFunction], count: int, seed: int) -> list[TraceFunction]:
    """One function per rate stratum, in the source's order."""
    if count >= len(functions):
        return list(functions)
    ordered = sorted(functions, key=_key)
    chosen = set()
    for stratum in range(count):
        lo, hi = stratum * len(ordered) // count, (stratum + 1) * len(ordered) // count
        rng = seeding.stream(seed, "sample", f"{count}:{stratum}")
        chosen.add(id(ordered[lo + below(rng, hi - lo)]))
    return [f for f in functions if id(f) in chosen]


def _metrics(span_minutes: float) -> dict[str, Callable[[TraceFunction], float | None]]:
    return {
        "invocations_per_minute": lambda f: f.invocations / span_minutes,
        "duration_ms_p50": lambda f: f.profile.duration_ms.p50 if f.profile.duration_ms else None,
        "memory_mb_p50": lambda f: f.profile.memory_mb.p50 if f.profile.memory_mb else None,
    }


def report(population: list[TraceFunction], chosen: list[TraceFunction], span_minutes: float) -> dict:
    """Wasserstein distance between sample and population, per metric."""
    from scipy.stats import wasserstein_distance
    result: dict[str, object] = {"population": len(population), "sample": len(chosen)}
    for name, metric in _metrics(span_minutes).items():
        everyone = [v for f in population if (v := metric(f)) is not None]
        sampled = [v for f in chosen if (v := metric(f)) is not None]
        if not everyone or not sampled:
            result[name] = None
            continue
        distance = float(wasserstein_distance(everyone, sampled))
        mean = sum(everyone) / len(everyone)
        logged = float(wasserstein_distance([math.log10(max(v, 1e-3)) for v in everyone],
                                            [math.log10(max(v, 1e-3)) for v in sampled]))
        result[name] = {"wasserstein": round(distance, 6), "wasserstein_log10": round(logged, 6),
                        "relative_to_mean": round(distance / mean, 6) if mean else None,
                        "population_mean": round(mean, 6), "sample_mean": round(sum(sampled) / len(sampled), 6)}
    return result
