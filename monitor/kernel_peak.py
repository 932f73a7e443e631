"""The kernel's own peak memory of a container, per activation (docs/monitor.md, Kernel peaks).

The sampler sees the memory every ``resolution_s``; what the container used between two samples
is lost.  The kernel keeps a high-water mark of its own: cgroup v1 ``memory.max_usage_in_bytes``
(reset by writing ``0``), cgroup v2 ``memory.peak`` (since Linux 6.12, writing ``reset`` to an
open file resets the mark *as seen through that file* only; before, it is read-only, and Linux
before 5.19 has no ``memory.peak`` at all).

A :class:`PeakCounter` per container; an activation's start notice calls :meth:`PeakCounter.begin`,
its end notice :meth:`PeakCounter.end`.  Both run in the notification socket's worker threads,
never in the sampler's, and cost a few µs (one open and one write, one read and one close).

* v1: the one counter of the container is reset at the start when no other activation is running
  in it (one activation at a time, OpenWhisk's default), and read at the end: ``activation``.
  Otherwise it is not reset, and the value read covers more than the activation: ``since_creation``
  when the counter was never reset (nobody else writes it), else ``unavailable``.
* v2 with a resettable ``memory.peak``: every activation opens its own file and resets it, so
  activations running at once each get their own peak: ``activation``.
* v2 without (Linux 5.19-6.11): the container's peak since its creation, read at the end:
  ``since_creation``.

A start notice handled more than :data:`LATE_RESET_S` after its date may have come after the
activation began (its sender stopped waiting): the counter is not reset, and the activation gets
the unscoped value (``since_creation`` or ``unavailable``), never a peak that missed its start.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from faasload.monitor_protocol import KernelPeak, PeakSource

from .cgroups import open_regular, pread_int

log = logging.getLogger(__name__)

#: The counter files, by cgroup version, and what resets them.
PEAK_FILES = {1: "memory.max_usage_in_bytes", 2: "memory.peak"}
_RESET = {1: b"0", 2: b"reset"}
#: A start notice handled later than this after its date is too late to reset the counter
#: (localwhisk waits this long, its notification timeout, for the notice to be handled).
LATE_RESET_S = 0.05

UNAVAILABLE = KernelPeak(None, PeakSource.UNAVAILABLE)


def _close(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


class Watch:
    """One activation's hold on its container's counter, from its start to its end."""

    __slots__ = ("counter", "fd", "scoped")

    def __init__(self, counter: PeakCounter, fd: int | None, scoped: bool):
        self.counter = counter
        self.fd = fd            # v2: this activation's own reset file; None otherwise
        self.scoped = scoped    # the counter was reset at the activation's start

    def close(self) -> None:
        fd, self.fd = self.fd, None
        _close(fd)


class PeakCounter:
    """The peak counter of one container's cgroup (``directory``: its memory directory)."""

    def __init__(self, directory: Path, version: int, *, resettable: bool | None = None):
        """``resettable`` (v2): whether ``memory.peak`` can be reset per open file; None = find
        out (it can when it opens for writing and takes ``reset``)."""
        self.path = Path(directory) / PEAK_FILES[version]
        self.version = version
        self._lock = threading.Lock()
        self._active: set[Watch] = set()
        self._ever_reset = False
        self._resettable = resettable if version == 2 else True
        self._fd = self._open_shared()

    def _open_shared(self) -> int | None:
        """The container's own file: read (and, v1, reset) by every activation."""
        for flags in ((os.O_RDWR, os.O_RDONLY) if self.version == 1 else (os.O_RDONLY,)):
            try:
                return open_regular(self.path, flags)
            except FileNotFoundError:
                log.info("%s: no such file, no kernel peak for this container", self.path)
                return None
            except OSError as exc:
                last = exc
        log.warning("cannot open %s: %s (no kernel peak for this container)", self.path, last)
        return None

    @property
    def available(self) -> bool:
        return self._fd is not None

    def begin(self, late: bool = False) -> Watch:
        """An activation starts in the container; ``late``: its start notice came too late to reset."""
        if self.version == 2:
            fd = None if late or self._fd is None else self._own_reset_file()
            return Watch(self, fd, fd is not None)
        with self._lock:
            scoped = not late and not self._active and self._reset_shared()
            watch = Watch(self, None, scoped)
            self._active.add(watch)
        return watch

    def _reset_shared(self) -> bool:
        fd = self._fd
        if fd is None:
            return False
        try:
            os.pwrite(fd, _RESET[1], 0)
        except OSError as exc:
            log.debug("%s: reset refused (%s)", self.path, exc)
            return False
        self._ever_reset = True
        return True

    def _own_reset_file(self) -> int | None:
        """v2: a file of ``memory.peak`` of the activation's own, reset; None when not resettable."""
        if self._resettable is False:
            return None
        fd = None
        try:
            fd = open_regular(self.path, os.O_RDWR)
            os.pwrite(fd, _RESET[2], 0)
        except OSError as exc:
            _close(fd)
            if self._resettable is None:
                log.info("%s cannot be reset per open file (%s; Linux before 6.12): peaks since the "
                         "container's creation", self.path, exc.strerror or exc)
                self._resettable = False
            return None
        self._resettable = True
        return fd

    def peek(self, watch: Watch) -> KernelPeak:
        """The peak of a running activation so far (its end was not announced)."""
        if watch.scoped:
            with self._lock:  # close() may run meanwhile: never read a descriptor number reused
                value = pread_int(watch.fd if self.version == 2 else self._fd)
            if value is not None:
                return KernelPeak(value, PeakSource.ACTIVATION)
        return self.unscoped()

    def end(self, watch: Watch) -> KernelPeak:
        """The activation of ``watch`` ended: its peak (the watch is closed)."""
        try:
            return self.peek(watch)
        finally:
            with self._lock:
                self._active.discard(watch)
            watch.close()

    def unscoped(self) -> KernelPeak:
        """The counter as it stands, for an activation it was not reset for: the container's peak
        since its creation when nothing ever reset it, else unavailable."""
        with self._lock:
            if self._ever_reset:
                return UNAVAILABLE
            value = pread_int(self._fd)
        return UNAVAILABLE if value is None else KernelPeak(value, PeakSource.SINCE_CREATION)

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        _close(fd)
