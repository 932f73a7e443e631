"""The scheduler: one heap of absolute deadlines, driven by tick() and a fake clock."""

import threading

from faasload.clock import FakeClock
from loader.plan import PlannedInvocation, TraceEnded
from loader.scheduler import Scheduler


class ListSource:
    """A trace source over a list of offsets (µs); counts how far it was read."""

    def __init__(self, name, offsets_us):
        self.name = name
        self._offsets = list(offsets_us)
        self.read = 0

    def next_invocation(self):
        if self.read >= len(self._offsets):
            return None
        seq = self.read
        self.read += 1
        return PlannedInvocation(self.name, seq, "u", "a", self._offsets[seq], None, ())


class BadSource(ListSource):
    def next_invocation(self):
        if self.read == 1:
            raise TraceEnded("t:2: broken", lost=2)
        return super().next_invocation()


def test_merges_traces_in_deadline_order_at_absolute_times():
    clock = FakeClock(start_s=100.0)
    out = []
    sources = [ListSource("a", [0, 1_500_000, 3_000_000]), ListSource("b", [250_000, 1_500_000])]
    scheduler = Scheduler(sources, out.append, clock=clock, start_s=100.0)
    assert scheduler.tick() == 100.25
    assert [(d.invocation.trace_name, d.invocation.seq, d.dispatched_offset_us) for d in out] == [("a", 0, 0)]
    clock.now_s = 100.25
    assert scheduler.tick() == 101.5
    clock.now_s = 101.5
    assert scheduler.tick() == 103.0
    assert [(d.invocation.trace_name, d.invocation.seq) for d in out][-2:] == [("a", 1), ("b", 1)]
    clock.now_s = 103.0
    assert scheduler.tick() is None and scheduler.finished
    assert all(d.dispatch_lateness_us == 0 for d in out)
    assert scheduler.stats.dispatched == 5 and scheduler.stats.traces_ended == 2


def test_late_invocations_are_dispatched_and_counted_never_dropped():
    clock = FakeClock(start_s=0.0)
    out = []
    scheduler = Scheduler([ListSource("a", [0, 10, 20, 1_000_000])], out.append, clock=clock, start_s=0.0)
    clock.now_s = 0.5  # the scheduler was held up for half a second
    assert scheduler.tick() == 1.0
    assert [d.dispatch_lateness_us for d in out] == [500_000, 499_990, 499_980]
    assert scheduler.stats.max_dispatch_lateness_us == 500_000


def test_run_sleeps_to_each_deadline_with_no_drift():
    clock = FakeClock(start_s=0.0)
    out = []
    offsets = [n * 100_000 for n in range(1, 1001)]  # 0.1 s steps: floats would drift if summed
    scheduler = Scheduler([ListSource("a", offsets)], out.append, clock=clock, start_s=0.0)
    scheduler.run(threading.Event())
    assert [d.dispatch_lateness_us for d in out] == [0] * 1000
    assert clock.now_s == 100.0


def test_ten_thousand_traces_hold_one_pending_invocation_each():
    clock = FakeClock(start_s=0.0)
    sources = [ListSource(f"t{n}", [n % 997 * 1000 + k * 1_000_000 for k in range(5)]) for n in range(10_000)]
    out = []
    scheduler = Scheduler(sources, out.append, clock=clock, start_s=0.0)
    assert len(scheduler._heap) == 10_000 and sum(s.read for s in sources) == 10_000
    clock.now_s = 0.5
    scheduler.tick()
    assert len(scheduler._heap) == 10_000
    scheduler.run(threading.Event())
    assert len(out) == 50_000
    offsets = [d.invocation.planned_offset_us for d in out]
    assert offsets == sorted(offsets)


def test_stop_then_drain_returns_every_undispatched_invocation():
    clock = FakeClock(start_s=0.0)
    out = []
    sources = [ListSource("a", [0, 2_000_000, 4_000_000]), ListSource("b", [1_000_000, 5_000_000])]
    scheduler = Scheduler(sources, out.append, clock=clock, start_s=0.0)
    clock.now_s = 1.0
    scheduler.tick()
    rest = list(scheduler.drain())
    assert sorted((i.trace_name, i.seq) for i in rest) == [("a", 1), ("a", 2), ("b", 1)]
    assert len(out) + len(rest) == 5


def test_a_source_failing_mid_run_is_reported_and_ends():
    clock = FakeClock(start_s=0.0)
    out = []
    scheduler = Scheduler([BadSource("bad", [0, 1, 2]), ListSource("ok", [5])], out.append, clock=clock,
                          start_s=0.0)
    scheduler.run(threading.Event())
    assert [d.invocation.trace_name for d in out] == ["bad", "ok"]
    assert scheduler.stats.trace_errors == [{"trace": "bad", "error": "t:2: broken", "lost": 2}]


def test_a_lead_hands_invocations_out_ahead_of_their_time():
    """For senders that send each invocation at its planned time: handed out up to the lead before it."""
    clock = FakeClock(start_s=0.0)
    out = []
    scheduler = Scheduler([ListSource("a", [0, 1_000_000, 1_400_000, 3_000_000])], out.append, clock=clock,
                          start_s=0.0, lead_s=0.5)
    assert scheduler.tick() == 1.0                     # the next planned time; run() sleeps to 0.5
    clock.now_s = 0.5
    assert scheduler.tick() == 1.4
    assert [d.invocation.seq for d in out] == [0, 1]
    clock.now_s = 0.9
    assert scheduler.tick() == 3.0
    assert [d.dispatch_lateness_us for d in out] == [0, -500_000, -500_000]   # early: the senders wait
    assert scheduler.stats.max_dispatch_lateness_us == 0


def test_run_hands_out_half_a_lead_at_a_time():
    """It wakes when the next invocation is half the lead away and hands out everything within the lead."""
    clock = FakeClock(start_s=0.0)
    out = []
    offsets_us = [2_000_000, 2_100_000, 2_240_000, 2_260_000, 2_600_000]
    scheduler = Scheduler([ListSource("a", offsets_us)], lambda item: out.append((clock.now_s, item)), clock=clock,
                          start_s=0.0, lead_s=0.5)
    scheduler.run(threading.Event())
    assert [(round(now_s, 6), d.invocation.seq) for now_s, d in out] == [(1.75, 0), (1.75, 1), (1.75, 2),
                                                                         (2.01, 3), (2.35, 4)]
    assert all(d.dispatch_lateness_us <= -250_000 for _, d in out)
