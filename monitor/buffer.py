"""A container's samples: a bounded, append-only series in fixed-size numpy chunks.

32 bytes per sample (epoch seconds as float64, memory/RSS+mapped bytes and CPU ns as int64,
``-1`` standing for "not measured").  Whole chunks older than ``maxage_s`` are dropped, and the
buffer never holds more than ``max_samples``; the sampler appends, queries copy out under a lock.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from faasload.monitor_protocol import Sample

from .cgroups import Reading

CHUNK_SAMPLES = 1024
_NONE = -1


class SampleBuffer:
    __slots__ = ("maxage_s", "max_chunks", "_dates", "_values", "_fill", "_lock", "dropped")

    def __init__(self, maxage_s: float, max_samples: int):
        self.maxage_s = maxage_s
        self.max_chunks = max(2, -(-max_samples // CHUNK_SAMPLES) + 1)
        self._dates: deque[np.ndarray] = deque()
        self._values: deque[np.ndarray] = deque()
        self._fill = CHUNK_SAMPLES  # the last chunk is full: the next append opens one
        self._lock = threading.Lock()
        self.dropped = 0

    def append(self, date_s: float, reading: Reading) -> None:
        with self._lock:
            if self._fill == CHUNK_SAMPLES:
                self._dates.append(np.empty(CHUNK_SAMPLES, dtype=np.float64))
                self._values.append(np.empty((CHUNK_SAMPLES, 3), dtype=np.int64))
                self._fill = 0
                if len(self._dates) > self.max_chunks:
                    self._drop_oldest()
            i = self._fill
            self._dates[-1][i] = date_s
            row = self._values[-1][i]
            row[0] = _NONE if reading.memory_bytes is None else reading.memory_bytes
            row[1] = _NONE if reading.cpu_ns is None else reading.cpu_ns
            row[2] = _NONE if reading.rss_mapped_bytes is None else reading.rss_mapped_bytes
            self._fill = i + 1

    def evict(self, now_epoch_s: float) -> None:
        """Drop whole chunks whose newest sample is older than ``maxage_s``."""
        with self._lock:
            while len(self._dates) > 1 and self._dates[0][-1] < now_epoch_s - self.maxage_s:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        self._dates.popleft()
        self._values.popleft()
        self.dropped += CHUNK_SAMPLES

    def __len__(self) -> int:
        with self._lock:
            return 0 if not self._dates else (len(self._dates) - 1) * CHUNK_SAMPLES + self._fill

    def _snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if not self._dates:
                return np.empty(0), np.empty((0, 3), dtype=np.int64)
            dates = np.concatenate(self._dates)[: (len(self._dates) - 1) * CHUNK_SAMPLES + self._fill]
            values = np.concatenate(self._values)[: len(dates)]
        return dates, values

    def latest_date_s(self) -> float | None:
        with self._lock:
            if not self._dates:
                return None
            return float(self._dates[-1][self._fill - 1])

    def window(self, start_s: float, end_s: float, *, bracket: bool = False) -> tuple[Sample, ...]:
        """Samples with ``start_s <= date <= end_s`` (plus, with ``bracket``, the last one before
        and the first one after), CPU relative to the first returned sample that has CPU."""
        dates, values = self._snapshot()
        lo = int(np.searchsorted(dates, start_s, side="left"))
        hi = int(np.searchsorted(dates, end_s, side="right"))
        if bracket:
            lo = max(0, lo - 1)
            hi = min(len(dates), hi + 1)
        return _samples(dates[lo:hi], values[lo:hi])


def _samples(dates: np.ndarray, values: np.ndarray) -> tuple[Sample, ...]:
    cpu = values[:, 1]
    measured = np.flatnonzero(cpu != _NONE)
    base = int(cpu[measured[0]]) if len(measured) else 0
    out = []
    for date, (memory, cpu_ns, rss) in zip(dates.tolist(), values.tolist()):
        out.append(Sample(date, None if memory == _NONE else memory,
                          None if cpu_ns == _NONE else cpu_ns - base,
                          None if rss == _NONE else rss))
    return tuple(out)
