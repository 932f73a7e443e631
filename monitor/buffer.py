"""A container's samples: a preallocated ring of fixed-size records, one writer, readers without a lock.

Data layout (what a reader may rely on)
---------------------------------------
``ring`` is a numpy structured array of ``capacity`` records of 32 bytes (:data:`SAMPLE_DTYPE`,
little-endian, no padding), allocated once with ``np.empty`` (the system provides the pages only
as the ring fills them):

======================  =======  ===========================================================
field                   dtype    value
======================  =======  ===========================================================
``date_s``              float64  when the sample was read, epoch seconds (increasing)
``memory_bytes``        int64    cgroup memory usage, bytes
``cpu_ns``              int64    cumulative CPU time as read from the cgroup, ns (not relative)
``rss_mapped_bytes``    int64    RSS + mapped file, bytes
======================  =======  ===========================================================

``ring["date_s"]`` and the others are strided views (no copy).  ``NOT_MEASURED`` (-1) in an int
field is "not measured" (None in a :class:`Sample`).  Samples are numbered from 0 in the order
appended; sample ``k`` is record ``k % capacity``.  ``count`` is the number of samples appended
so far; ``oldest`` the number of the oldest sample not evicted by age.  The samples a reader may
use are numbers ``first .. count - 1`` with ``first = max(oldest, count - capacity + 1)``
(:meth:`SampleBuffer.span`): in record order that is at most two runs, ``[first % capacity,
capacity)`` then ``[0, count % capacity)`` when it wraps, each sorted by date, the first older.

The writer fills a record with one ``struct.pack_into`` through a byte view of the same memory
(one C call instead of four numpy item assignments, each of which costs more than the call).

Memory ordering (why readers need no lock)
------------------------------------------
One writer at a time calls :meth:`SampleBuffer.append`: the sampler thread while the container
runs (and the registry, under its lock, for the one sample of a container first seen paused,
which the sampler does not sample).  It writes sample ``count``'s record, and only then
publishes it by storing ``count + 1`` in ``count``.  Both happen with the
GIL held, and taking and releasing the GIL are full memory barriers (a mutex and atomics in
CPython), so a reader thread that reads ``count`` (with the GIL) sees the records of every sample
below it.  A reader cannot know whether the writer is in the middle of an append (between two
bytecodes, the record of sample ``count``, which is also the record of sample
``count - capacity``, may be written and ``count`` not yet stored): hence the ``+ 1`` in
``first``.  A reader that searches or copies records without the GIL (numpy releases it for large
copies) or over several bytecodes must read ``count`` again afterwards: if the new ``first`` is
past a sample it used, the writer may have overwritten that sample meanwhile, and the reader
starts again (:meth:`SampleBuffer.window` does; it copies only the records of its window).
``oldest`` only grows and has one writer too, :meth:`SampleBuffer.evict` (housekeeping);
``count`` and ``oldest`` are Python ints, each replaced by one store.
"""

from __future__ import annotations

import struct

import numpy as np

from faasload.monitor_protocol import NO_SAMPLES, Samples

from .cgroups import NOT_MEASURED

_NONE = NOT_MEASURED
_RECORD = struct.Struct("<dqqq")
SAMPLE_DTYPE = np.dtype([("date_s", "<f8"), ("memory_bytes", "<i8"), ("cpu_ns", "<i8"), ("rss_mapped_bytes", "<i8")])
assert SAMPLE_DTYPE.itemsize == _RECORD.size == 32


class SampleBuffer:
    __slots__ = ("maxage_s", "capacity", "ring", "_bytes", "_pack", "count", "oldest")

    def __init__(self, maxage_s: float, max_samples: int):
        self.maxage_s = maxage_s
        #: One record more than max_samples: the record an append may be overwriting is not readable.
        self.capacity = max(2, max_samples + 1)
        memory = np.empty(self.capacity * _RECORD.size, dtype=np.uint8)
        self.ring = memory.view(SAMPLE_DTYPE)
        self._bytes = memory.data
        self._pack = _RECORD.pack_into
        self.count = 0
        self.oldest = 0

    def append(self, date_s: float, memory_bytes: int, cpu_ns: int, rss_mapped_bytes: int) -> None:
        """Add a sample (values in the fields' units, ``NOT_MEASURED`` for None).  One writer at a
        time (see the module's memory-ordering note)."""
        count = self.count
        self._pack(self._bytes, count % self.capacity * 32, date_s, memory_bytes, cpu_ns, rss_mapped_bytes)
        self.count = count + 1  # publishes the sample

    def span(self) -> tuple[int, int]:
        """``(first, end)``: the numbers of the samples a reader may use are ``first .. end - 1``."""
        end = self.count
        return max(self.oldest, end - self.capacity + 1), end

    @property
    def dropped(self) -> int:
        """Samples no longer held (overwritten by newer ones, or evicted by age)."""
        return self.span()[0]

    def evict(self, now_epoch_s: float) -> None:
        """Forget samples older than ``maxage_s`` (their records are reused as the ring turns).
        Appends meanwhile may overwrite the oldest records with newer dates: the search then
        finds fewer old samples, never more."""
        first, end = self.span()
        cutoff_s = now_epoch_s - self.maxage_s
        if first == end or self.ring["date_s"][first % self.capacity] >= cutoff_s:
            return  # nothing old: the usual case, every housekeeping round for every container
        old = _position([run["date_s"] for run in self._runs(first, end)], cutoff_s, "left")
        if old:
            self.oldest = first + min(old, end - first - 1)  # the newest sample stays

    def newest_date_s(self) -> float | None:
        """The date of the newest sample, None when there is none.  Its record is not the one an
        append may be writing (that one is sample ``count``'s)."""
        first, end = self.span()
        return None if first == end else float(self.ring["date_s"][(end - 1) % self.capacity])

    def __len__(self) -> int:
        first, end = self.span()
        return end - first

    def _runs(self, first: int, end: int) -> list[np.ndarray]:
        """The records of samples ``first .. end - 1`` in order, as views: one run, or two when
        they wrap around the end of the ring."""
        start, stop = first % self.capacity, end % self.capacity
        if end == first:
            return []
        if start < stop:
            return [self.ring[start:stop]]
        return [self.ring[start:], self.ring[:stop]]

    def window(self, start_s: float, end_s: float, *, bracket: bool = False) -> Samples:
        """Samples with ``start_s <= date <= end_s`` (plus, with ``bracket``, the last one before
        and the first one after), CPU relative to the first returned sample that has CPU.

        Searches the dates in place and copies only the window's records; starts again if the
        writer overwrote one of them meanwhile (the module's memory-ordering note)."""
        while True:
            first, end = self.span()
            if first == end:
                return NO_SAMPLES
            dates = [run["date_s"] for run in self._runs(first, end)]
            lo = first + _position(dates, start_s, "left")
            hi = first + _position(dates, end_s, "right")
            if bracket:
                lo, hi = max(first, lo - 1), min(end, hi + 1)
            if hi <= lo:
                return NO_SAMPLES
            runs = self._runs(lo, hi)
            records = runs[0].copy() if len(runs) == 1 else np.concatenate(runs)
            if self.span()[0] <= lo:
                return _samples(records)


def _position(runs: list[np.ndarray], date_s: float, side: str) -> int:
    """Where ``date_s`` goes in ``runs`` taken as one sorted series (``np.searchsorted`` of their
    concatenation, without making it; the array's own method, without ``np.searchsorted``'s
    dispatch)."""
    offset = 0
    for run in runs:
        at = int(run.searchsorted(date_s, side=side))  # type: ignore[call-overload]
        if at < len(run):
            return offset + at
        offset += len(run)
    return offset


def _samples(records: np.ndarray) -> Samples:
    """The records as sample columns, CPU relative to the first sample that has CPU.  In Python on
    the records' ``tolist()``: an activation's window holds a few samples, for which numpy's calls
    (a column, a comparison, ``flatnonzero``) cost more than the loop."""
    rows = records.tolist()
    if not rows:
        return NO_SAMPLES
    dates, memory, cpu, rss = zip(*rows)
    base = next((cpu_ns for cpu_ns in cpu if cpu_ns != _NONE), 0)
    return Samples(dates, _measured(memory), tuple([None if cpu_ns == _NONE else cpu_ns - base for cpu_ns in cpu]),
                   _measured(rss))


def _measured(column: tuple[int, ...]) -> tuple[int | None, ...]:
    """``NOT_MEASURED`` as None."""
    return tuple([None if value == _NONE else value for value in column]) if _NONE in column else column
