"""The sample buffer's window query: equal to a search over all samples, without copying them all."""

from __future__ import annotations

import random

import numpy as np
import pytest

from monitor import buffer as buffer_module
from monitor.buffer import CHUNK_SAMPLES, SampleBuffer
from monitor.cgroups import Reading


def filled(count: int, *, max_samples: int = 100_000, step_s: float = 0.01) -> tuple[SampleBuffer, list[float]]:
    samples = SampleBuffer(maxage_s=3600, max_samples=max_samples)
    dates = []
    for n in range(count):
        date_s = 1000.0 + n * step_s
        samples.append(date_s, Reading(memory_bytes=n, rss_mapped_bytes=None if n % 3 else 2 * n, cpu_ns=10 * n))
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


@pytest.mark.parametrize("count", [1, CHUNK_SAMPLES - 1, CHUNK_SAMPLES, CHUNK_SAMPLES + 1, 5 * CHUNK_SAMPLES + 7])
def test_window_equals_a_search_over_every_sample(count):
    samples, dates = filled(count)
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


def test_window_after_the_oldest_chunks_were_dropped():
    samples, dates = filled(10 * CHUNK_SAMPLES + 5, max_samples=3 * CHUNK_SAMPLES)
    kept = dates[-len(samples):]
    assert samples.dropped > 0 and len(kept) < len(dates)
    assert [s.date_s for s in samples.window(0, 1e12)] == kept
    assert samples.window(0, dates[0]) == ()
    middle = kept[len(kept) // 2]
    assert [s.date_s for s in samples.window(middle, middle, bracket=True)] == reference(kept, middle, middle, True)


def test_window_copies_only_the_chunks_it_covers(monkeypatch):
    """A 10-sample window of a 50,000-sample buffer concatenates at most two chunks, never them all."""
    samples, dates = filled(50_000)
    sizes = []
    concatenate = np.concatenate

    def counting(arrays, *args, **kwargs):
        arrays = list(arrays)
        sizes.append(sum(len(a) for a in arrays))
        return concatenate(arrays, *args, **kwargs)

    monkeypatch.setattr(buffer_module.np, "concatenate", counting)
    got = samples.window(dates[30_000], dates[30_009])
    assert len(got) == 10
    assert sizes and max(sizes) <= 2 * CHUNK_SAMPLES


def test_empty_buffer_answers_nothing():
    assert SampleBuffer(maxage_s=60, max_samples=100).window(0, 1e12, bracket=True) == ()
