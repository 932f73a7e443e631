"""Unit tests of loader.workloads.arrivals: spreading within a column, processes, scales."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest
from scipy import stats

from loader.workloads import arrivals
from loader.workloads.arrivals import Iat

MINUTE_US = 60_000_000


@pytest.mark.parametrize("iat", list(Iat))
@pytest.mark.parametrize("count", [0, 1, 2, 7, 1000])
def test_spread_keeps_the_count_inside_the_column_in_order(iat, count):
    rng = random.Random(count)
    times = arrivals.spread(count, 5 * MINUTE_US, MINUTE_US, iat, rng, phase=arrivals.draw_phase(rng))
    assert len(times) == count and times == sorted(times)
    assert all(5 * MINUTE_US <= t < 6 * MINUTE_US for t in times)


def test_equidistant_spacing_and_phase():
    assert arrivals.spread(4, 0, MINUTE_US, Iat.EQUIDISTANT, random.Random(0)) == [0, 15_000_000, 30_000_000,
                                                                                   45_000_000]
    half = arrivals.PHASE_STEPS // 2
    assert arrivals.spread(4, 0, MINUTE_US, Iat.EQUIDISTANT, random.Random(0), phase=half) == [
        7_500_000, 22_500_000, 37_500_000, 52_500_000]


def test_exponential_spreading_passes_a_kolmogorov_smirnov_test():
    """A long synthetic: 2,000 minutes whose counts a Poisson process of 0.5/s would give (Poisson(30) per
    minute), spread exponentially.  Spreading is a Poisson process conditioned on each minute's count, so the
    result is that Poisson process again: its gaps are exponential with mean 2 s."""
    counts = stats.poisson.rvs(30, size=2000, random_state=2019).tolist()
    times = list(arrivals.spread_columns(enumerate(counts), MINUTE_US, Iat.EXPONENTIAL, random.Random(2019)))
    assert len(times) == sum(counts)
    gaps_s = [(b - a) / 1e6 for a, b in itertools.pairwise(times)]
    result = stats.kstest(gaps_s, "expon", args=(0, 2.0))
    assert result.pvalue > 0.05, result
    # the test has power: the uniform spreading (more regular gaps) of the same counts is rejected
    uniform = list(arrivals.spread_columns(enumerate(counts), MINUTE_US, Iat.UNIFORM, random.Random(2019)))
    assert stats.kstest([(b - a) / 1e6 for a, b in itertools.pairwise(uniform)], "expon", args=(0, 2.0)).pvalue < 1e-6


def test_poisson_process_passes_a_kolmogorov_smirnov_test():
    times = list(arrivals.poisson(5.0, 0, 20_000 * 1_000_000, random.Random(7)))
    gaps_s = [(b - a) / 1e6 for a, b in itertools.pairwise(times)]
    assert abs(len(times) - 100_000) < 5 * 100_000 ** 0.5
    assert stats.kstest(gaps_s, "expon", args=(0, 0.2)).pvalue > 0.05


def test_processes_respect_their_window_and_rate():
    window = (10_000_000, 70_000_000)
    equidistant = list(arrivals.equidistant(2.0, *window, random.Random(1)))
    assert len(equidistant) == 120 and all(window[0] <= t < window[1] for t in equidistant)
    assert {b - a for a, b in itertools.pairwise(equidistant)} <= {499_999, 500_000, 500_001}
    uniform = list(arrivals.uniform_gaps(10.0, *window, random.Random(2)))
    assert abs(len(uniform) - 600) < 5 * 600 ** 0.5 and all(window[0] <= t < window[1] for t in uniform)
    assert max(b - a for a, b in itertools.pairwise(uniform)) <= 200_000
    piecewise = list(arrivals.piecewise([(0, 1.0), (100_000_000, 20.0)], 200_000_000, random.Random(3)))
    early = sum(1 for t in piecewise if t < 100_000_000)
    assert abs(early - 100) < 50 and abs(len(piecewise) - early - 2000) < 5 * 2000 ** 0.5
    assert list(arrivals.poisson(0.0, 0, 10**9, random.Random(0))) == []


def test_rate_scale_thins_and_replicates():
    assert arrivals.scale_count(10, Fraction(3), random.Random(0)) == 30
    assert arrivals.scale_count(0, Fraction(1, 2), random.Random(0)) == 0
    kept = sum(arrivals.scale_count(100, Fraction(1, 4), random.Random(i)) for i in range(100))
    assert abs(kept - 2500) < 5 * (10_000 * 0.25 * 0.75) ** 0.5
    replicated = arrivals.scale_count(1000, Fraction(3, 2), random.Random(9))
    assert 1000 + 400 < replicated < 1000 + 600


def test_time_scale_is_exact_and_factors_are_checked():
    assert arrivals.scale_time(60_000_000, Fraction("0.05")) == 3_000_000
    assert arrivals.scale_time(7, Fraction(1, 3)) == 2
    assert arrivals.parse_factor("1/3", "--time-scale") == Fraction(1, 3)
    for bad, message in (("0", "must be > 0"), ("x", "is not a number"), ("-2", "must be > 0")):
        with pytest.raises(ValueError, match=f"--rate-scale: '{bad}' {message}"):
            arrivals.parse_factor(bad, "--rate-scale")
