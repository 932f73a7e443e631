"""Stratified (1-D Latin hypercube) versus i.i.d. per-invocation draws of loader.workloads (``--draws``)."""

from __future__ import annotations

import random
import statistics

import pytest
from scipy import stats

from loader.workloads.cold_starts import ColdStarts
from loader.workloads.draws import Draws, Permutation, units
from loader.workloads.limits import PlatformLimits
from loader.workloads.records import Percentiles
from tests.workloads_support import AZURE2019, convert, mapping, read_trace, tree_bytes, workload

#: heavy-tailed, as Azure 2019's duration percentiles (ms): p50 100, p99 50x that
HEAVY = Percentiles.of([(0, 2), (1, 5), (25, 40), (50, 100), (75, 400), (99, 5000), (100, 20000)])
SEEDS = 300


def requested(mode: Draws, count: int, seed: int) -> list[float]:
    """The values of a function's ``count`` warm invocations, after its first (a cold start, outside the strata)."""
    unit = units(random.Random(seed), mode, count)
    return [HEAVY.draw(unit(index == 0)) for index in range(count + 1)][1:]


def middle_strata(count: int) -> tuple[float, float]:
    """The percentiles bounding the middle one (odd n) or two (even n) strata of n."""
    low = (count - 1) // 2
    return HEAVY.at(100 * low / count), HEAVY.at(100 * (count - low) / count)


@pytest.mark.parametrize("count", [5, 10, 20])
def test_stratified_median_lies_in_the_middle_strata_for_every_seed(count):
    low, high = middle_strata(count)
    medians = {mode: [statistics.median(requested(mode, count, seed)) for seed in range(SEEDS)]
               for mode in (Draws.STRATIFIED, Draws.IID)}
    assert all(low <= m <= high for m in medians[Draws.STRATIFIED]), (low, high)
    outside = sum(not low <= m <= high for m in medians[Draws.IID])
    spread = {mode.value: (round(min(values)), round(max(values))) for mode, values in medians.items()}
    print(f"n={count}: middle strata [{low:g}, {high:g}] ms; median over {SEEDS} seeds ranges {spread}; "
          f"iid outside for {outside} seeds")
    assert outside > SEEDS // 10  # i.i.d. draws give no such guarantee
    assert max(medians[Draws.IID]) / min(medians[Draws.IID]) > 2 * high / low


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 8])
def test_quantiles_are_the_strata_midpoints_and_their_median_is_the_functions(count):
    unit = units(random.Random(count), Draws.QUANTILES, count)
    cold = unit(True)
    drawn = [unit(False) for _ in range(count)]
    assert cold == 0.5 and unit(True) == 0.5  # outside the strata: the median
    # the midpoints; for an even count the two middle strata take the median itself
    middle = {count // 2 - 1, count // 2} if count % 2 == 0 else set()
    assert sorted(drawn) == [0.5 if k in middle else (k + 0.5) / count for k in range(count)]
    values = [HEAVY.draw(u) for u in drawn]
    assert statistics.median(values) == pytest.approx(HEAVY.at(50))
    other = units(random.Random(count + 100), Draws.QUANTILES, count)
    assert sorted(other(False) for _ in range(count)) == sorted(drawn)  # only the order is seeded


def test_cold_starts_are_outside_the_strata():
    """Invocations predicted to start a container get independent draws; the others fill the strata."""
    outside = []
    for seed in range(200):
        unit = units(random.Random(seed), Draws.STRATIFIED, 2)
        first, a, second, b = unit(True), unit(False), unit(True), unit(False)
        assert sorted(int(u * 2) for u in (a, b)) == [0, 1]
        outside += [first, second]
    assert stats.kstest(outside, "uniform").pvalue > 0.05
    only_cold = units(random.Random(0), Draws.STRATIFIED, 0)
    assert 0 <= only_cold(True) < 1


def test_stratified_draws_follow_the_distribution_over_many_invocations():
    count = 20_000
    unit = units(random.Random(1), Draws.STRATIFIED, count)
    drawn = [unit(False) for _ in range(count)]
    assert stats.kstest(drawn, "uniform").pvalue > 0.05
    # every stratum holds exactly one unit, and the order is not the strata's
    assert sorted(int(u * count) for u in drawn) == list(range(count))
    assert abs(stats.spearmanr(range(count), drawn).statistic) < 0.05
    values = sorted(HEAVY.draw(u) for u in drawn)
    for percent in (1, 10, 25, 50, 75, 90, 99):
        k = count * percent // 100
        assert HEAVY.at(percent - 100 / count) <= values[k] <= HEAVY.at(percent + 100 / count)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 16, 17, 1000, 4097])
def test_the_permutation_is_a_seeded_bijection(count):
    order = Permutation(random.Random(count), count)
    assert sorted(order[i] for i in range(count)) == list(range(count))
    assert [order[i] for i in range(count)] == [Permutation(random.Random(count), count)[i] for i in range(count)]


def test_stratified_draws_refuse_more_than_counted_or_no_count():
    unit = units(random.Random(0), Draws.STRATIFIED, 2)
    unit(False), unit(True), unit(False)
    with pytest.raises(ValueError, match="more than the 2"):
        unit(False)
    with pytest.raises(ValueError, match="number of invocations"):
        units(random.Random(0), Draws.STRATIFIED, None)


def warm_durations_by_function(out) -> dict[str, tuple[float, list[float]]]:
    """Per unclamped function: its median duration, and the durations its invocations predicted
    to run warm ask for (those the strata are built over: loader/workloads/cold_starts.py)."""
    result = {}
    for row in mapping(out):
        if row["clamps"]:
            continue
        p50 = float(row["duration_ms_p50"])
        predictor = ColdStarts(round(PlatformLimits().keepalive_s * 1e6))   # the importer's default keep-alive
        result[row["trace_file"]] = (p50, [
            float(p["duration_ms"]) for offset_us, _, p in read_trace(out / "traces" / row["trace_file"])
            if not predictor.cold(offset_us, round(p50 * 1000))])
    return result


def test_calibrated_conversion_draws_stratified_by_default_and_iid_on_request(capsys, tmp_path):
    args = ("azure2019", "--trace", AZURE2019, "--map", "calibrated", "--memory", "draw", "--minutes", "540:560",
            "--seed", 3)
    within = {}
    for mode in ("stratified", "iid", "quantiles"):
        out = tmp_path / mode
        assert convert(capsys, *args, *(("--draws", mode) if mode != "stratified" else ()), "--out", out)[0] == 0
        assert workload(out)["options"]["draws"] == mode
        few = {trace: (p50, values) for trace, (p50, values) in warm_durations_by_function(out).items()
               if 1 <= len(values) < 20}
        within[mode] = sum(abs(statistics.median(values) - p50) <= 0.1 * p50 for p50, values in few.values())
    with capsys.disabled():
        print(f"of {len(few)} functions with 1-19 invocations predicted warm, their median within 10% of the "
              f"trace's: {within}")
    assert len(few) > 30 and within["stratified"] > within["iid"] + len(few) // 10
    assert within["quantiles"] > within["stratified"] + len(few) // 10
    (tmp_path / "stratified").rename(tmp_path / "first")
    assert convert(capsys, *args, "--out", tmp_path / "stratified")[0] == 0
    assert tree_bytes(tmp_path / "first") == tree_bytes(tmp_path / "stratified")
    assert tree_bytes(tmp_path / "iid") != tree_bytes(tmp_path / "stratified")
