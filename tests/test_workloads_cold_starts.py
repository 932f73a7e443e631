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


def test_a_container_idle_longer_than_the_keepalive_is_gone():
    minute_us = 60_000_000
    hourly = [(hour * 60 * minute_us, 100) for hour in range(4)]
    forever, ten_minutes = ColdStarts(), ColdStarts(10 * minute_us)
    assert [forever.cold(start, duration) for start, duration in hourly] == [True, False, False, False]
    assert [ten_minutes.cold(start, duration) for start, duration in hourly] == [True, True, True, True]
    # idle exactly the keep-alive: still warm; one µs longer: gone
    edge = ColdStarts(1_000)
    assert [edge.cold(start, 0) for start in (0, 1_000, 2_001)] == [True, False, True]
    assert (forever.containers, ten_minutes.containers) == (1, 4)


def test_the_container_freed_last_is_taken_and_the_others_age_out():
    predictor = ColdStarts(1_000)
    # two at once (two containers); then the one freed last is reused and the other, idle past 1,000 µs at
    # 1,300, is gone: the next overlap (1,950 while 1,900 runs) starts a third
    calls = [(0, 100), (0, 100), (700, 100), (1_300, 100), (1_900, 100), (1_950, 100), (2_050, 100)]
    assert [predictor.cold(start, duration) for start, duration in calls] == \
        [True, True, False, False, False, True, False]
    assert predictor.containers == 3
