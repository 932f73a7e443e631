"""The sample buffer: its window query equals a search over all samples, without copying them all;
the ring bounded by count and age; readers without a lock while the writer runs."""

from __future__ import annotations

import random
import sys
import threading

import numpy as np
import pytest

from faasload.monitor_protocol import NO_SAMPLES, Sample
from monitor import buffer as buffer_module
from monitor.buffer import SampleBuffer
from monitor.cgroups import NOT_MEASURED

#: Buffer sizes around a power of two (with max_samples=1000, the ring wraps several times).
COUNTS = [1, 1023, 1024, 1025, 5 * 1024 + 7]


def filled(count: int, *, max_samples: int = 100_000, step_s: float = 0.01) -> tuple[SampleBuffer, list[float]]:
    samples = SampleBuffer(maxage_s=3600, max_samples=max_samples)
    dates = []
    for n in range(count):
        date_s = 1000.0 + n * step_s
        samples.append(date_s, n, 10 * n, NOT_MEASURED if n % 3 else 2 * n)
        dates.append(date_s)
    return samples, dates


def reference(dates: list[float], start_s: float, end_s: float, bracket: bool) -> list[float]:
    """The window by one search over every sample (what the buffer did by concatenating them)."""
    series = np.array(dates)
    lo = int(np.searchsorted(series, start_s, side="left"))
    hi = int(np.searchsorted(series, end_s, side="right"))
    if bracket:
        lo, hi = max(0, lo - 1), min(len(series), hi + 1)
    return [float(d) for d in series[lo:hi]]


@pytest.mark.parametrize("max_samples", [100_000, 1000])
@pytest.mark.parametrize("count", COUNTS)
def test_window_equals_a_search_over_every_sample(count, max_samples):
    samples, dates = filled(count, max_samples=max_samples)
    dates = dates[-len(samples):]  # what the ring still holds
    rng = random.Random(count)
    edges = [dates[0] - 1, dates[0], dates[-1], dates[-1] + 1] + [rng.choice(dates) for _ in range(20)] + \
        [rng.uniform(dates[0], dates[-1]) for _ in range(20)]
    for _ in range(200):
        start_s, end_s = sorted((rng.choice(edges), rng.choice(edges)))
        for bracket in (False, True):
            got = samples.window(start_s, end_s, bracket=bracket)
            assert [s.date_s for s in got] == reference(dates, start_s, end_s, bracket), (start_s, end_s, bracket)
            if got:  # CPU relative to the first returned sample; "not measured" stays None
                first = round((got[0].date_s - 1000.0) / 0.01)
                assert got[0].cpu_ns == 0 and got[-1].cpu_ns == 10 * (round((got[-1].date_s - 1000.0) / 0.01) - first)
                assert all(s.rss_mapped_bytes is None or s.rss_mapped_bytes == 2 * s.memory_bytes for s in got)


def test_window_after_the_ring_turned():
    samples, dates = filled(10 * 1024 + 5, max_samples=3 * 1024)
    kept = dates[-len(samples):]
    assert samples.dropped > 0 and len(kept) < len(dates)
    assert [s.date_s for s in samples.window(0, 1e12)] == kept
    assert len(samples.window(0, dates[0])) == 0
    middle = kept[len(kept) // 2]
    assert [s.date_s for s in samples.window(middle, middle, bracket=True)] == reference(kept, middle, middle, True)


@pytest.mark.parametrize("max_samples, at", [(100_000, 30_000), (40_007, 40_003)])  # the second wraps
def test_window_copies_only_its_records(monkeypatch, max_samples, at):
    """A 10-sample window of a 40,000-50,000-sample buffer copies 10 records, never them all."""
    samples, dates = filled(50_000, max_samples=max_samples)
    answered, concatenated = [], []
    make_samples, concatenate = buffer_module._samples, np.concatenate

    def counting_samples(records):
        answered.append(len(records))
        return make_samples(records)

    def counting_concatenate(arrays, *args, **kwargs):
        arrays = list(arrays)
        concatenated.append(sum(len(a) for a in arrays))
        return concatenate(arrays, *args, **kwargs)

    monkeypatch.setattr(buffer_module, "_samples", counting_samples)
    monkeypatch.setattr(buffer_module.np, "concatenate", counting_concatenate)
    got = samples.window(dates[at], dates[at + 9])
    assert [s.date_s for s in got] == dates[at:at + 10]
    assert answered == [10]
    assert concatenated == ([10] if at + 10 > max_samples + 1 else [])


def test_empty_buffer_answers_nothing():
    assert SampleBuffer(maxage_s=60, max_samples=100).window(0, 1e12, bracket=True) is NO_SAMPLES


def test_buffer_is_bounded_by_count_and_age():
    buffer = SampleBuffer(maxage_s=10.0, max_samples=3000)
    for i in range(7000):  # 0.001 s apart: the ring turns twice
        buffer.append(float(i) * 0.001, i, i, i)
    assert len(buffer) == 3000
    assert buffer.dropped == 4000
    samples = buffer.window(0, 1e9)
    assert [s.memory_bytes for s in samples] == list(range(4000, 7000))
    assert samples[0].cpu_ns == 0 and samples[-1].cpu_ns == 2999
    buffer.evict(now_epoch_s=6.9995 + 10.0 - 0.5)  # samples older than 6.4995 s go
    assert len(buffer) == 500
    assert buffer.window(0, 1e9)[0].memory_bytes == 6500
    buffer.evict(now_epoch_s=1e9)
    assert [s.memory_bytes for s in buffer.window(0, 1e9)] == [6999]  # the newest stays


def test_window_across_the_ring_boundary_and_not_measured():
    buffer = SampleBuffer(maxage_s=10.0, max_samples=4)
    for i in range(7):
        buffer.append(100.0 + i, i * 10, NOT_MEASURED if i == 4 else 1000 + i, NOT_MEASURED)
    assert buffer.span() == (3, 7)
    assert tuple(buffer.window(104.0, 105.0)) == (Sample(104.0, 40, None, None), Sample(105.0, 50, 0, None))
    assert tuple(buffer.window(104.5, 104.6, bracket=True)) == (Sample(104.0, 40, None, None), Sample(105.0, 50, 0, None))
    assert [s.date_s for s in buffer.window(0, 1e9)] == [103.0, 104.0, 105.0, 106.0]


class _RacedBuffer(SampleBuffer):
    """The sampler appends twice while the first query looks its window up."""

    __slots__ = ()
    races = [2]

    def _runs(self, first, end):
        if self.races[0]:
            self.races[0] -= 1
            self.append(float(self.count), self.count, self.count, self.count)
        return super()._runs(first, end)


def test_window_starts_again_when_the_writer_overwrote_its_records():
    buffer = _RacedBuffer(maxage_s=10.0, max_samples=4)
    for i in range(5):
        SampleBuffer.append(buffer, float(i), i, i, i)
    assert buffer.span() == (1, 5)
    samples = buffer.window(0.0, 1e9)  # sample 1's record was sample 6's by the time it was copied
    assert [s.date_s for s in samples] == [3.0, 4.0, 5.0, 6.0]
    assert [s.memory_bytes for s in samples] == [3, 4, 5, 6]


def test_readers_without_a_lock_see_whole_samples_while_the_writer_runs():
    """One thread appends as fast as it can into a small ring while this one queries it: every
    sample read is whole (its values agree with its date) and in order, none torn or stale."""
    buffer = SampleBuffer(maxage_s=1e9, max_samples=64)
    done = threading.Event()

    def write():
        for i in range(100_000):
            buffer.append(float(i), i, i, i)
        done.set()

    writer = threading.Thread(target=write)
    queries = 0
    previous_switch_s = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        writer.start()
        while not done.is_set():
            samples = buffer.window(0.0, 1e12)
            dates = [s.date_s for s in samples]
            assert [s.memory_bytes for s in samples] == [int(d) for d in dates]
            assert all(b - a == 1.0 for a, b in zip(dates, dates[1:]))
            queries += 1
    finally:
        sys.setswitchinterval(previous_switch_s)
        writer.join()
    assert queries > 10
