"""loader/workloads/cold_starts.py: which invocations of a function need a new container."""

from __future__ import annotations

from loader.workloads.cold_starts import ColdStarts


def test_a_container_is_started_when_every_one_is_busy_and_reused_once_free():
    predictor = ColdStarts()
    # (start, duration) in µs: a burst of three, then arrivals once some have ended
    calls = [(0, 100), (10, 100), (20, 100), (150, 100), (160, 100), (170, 100), (180, 100), (400, 10)]
    assert [predictor.cold(start, duration) for start, duration in calls] == \
        [True, True, True, False, False, False, True, False]
    assert predictor.containers == 4


def test_back_to_back_invocations_share_one_container():
    predictor = ColdStarts()
    assert [predictor.cold(start, 100) for start in range(0, 1000, 100)] == [True] + [False] * 9
    assert ColdStarts().cold(5, 0) is True
