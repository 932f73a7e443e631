"""A container's samples: a bounded, append-only series in fixed-size numpy chunks.

32 bytes per sample (epoch seconds as float64, memory/RSS+mapped bytes and CPU ns as int64,
``-1`` standing for "not measured").  Whole chunks older than ``maxage_s`` are dropped, and the
buffer never holds more than ``max_samples``; the sampler appends under a lock, queries take
references to the chunks under it and copy out only the samples of their window.
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

    def _chunks(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """References to the chunks (no sample copied), the last one cut at its fill.  Safe to read
        without the lock: samples before the fill are never rewritten, dropped chunks stay alive."""
        with self._lock:
            if not self._dates:
                return [], []
            dates, values, fill = list(self._dates), list(self._values), self._fill
        dates[-1], values[-1] = dates[-1][:fill], values[-1][:fill]
        return dates, values

    def latest_date_s(self) -> float | None:
        with self._lock:
            if not self._dates:
                return None
            return float(self._dates[-1][self._fill - 1])

    def window(self, start_s: float, end_s: float, *, bracket: bool = False) -> tuple[Sample, ...]:
        """Samples with ``start_s <= date <= end_s`` (plus, with ``bracket``, the last one before
        and the first one after), CPU relative to the first returned sample that has CPU.

        Looks the window up chunk by chunk and copies only its samples, not the whole buffer."""
        dates, values = self._chunks()
        if not dates:
            return ()
        lasts = np.fromiter((chunk[-1] for chunk in dates), dtype=np.float64, count=len(dates))
        total = (len(dates) - 1) * CHUNK_SAMPLES + len(dates[-1])
        lo = _position(dates, lasts, start_s, "left", total)
        hi = _position(dates, lasts, end_s, "right", total)
        if bracket:
            lo = max(0, lo - 1)
            hi = min(total, hi + 1)
        if hi <= lo:
            return ()
        first, last = lo // CHUNK_SAMPLES, (hi - 1) // CHUNK_SAMPLES
        offset = first * CHUNK_SAMPLES
        window_dates = np.concatenate(dates[first:last + 1])[lo - offset:hi - offset]
        window_values = np.concatenate(values[first:last + 1])[lo - offset:hi - offset]
        return _samples(window_dates, window_values)


def _position(dates: list[np.ndarray], lasts: np.ndarray, date_s: float, side: str, total: int) -> int:
    """Where ``date_s`` goes in the chunks taken as one sorted series (``np.searchsorted`` of their
    concatenation): every chunk but the last holds ``CHUNK_SAMPLES``."""
    chunk = int(np.searchsorted(lasts, date_s, side=side))  # type: ignore[call-overload]
    if chunk == len(dates):
        return total
    return chunk * CHUNK_SAMPLES + int(np.searchsorted(dates[chunk], date_s, side=side))  # type: ignore[call-overload]


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
