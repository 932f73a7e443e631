"""A wake-up of an event loop at an absolute ``time.monotonic()`` instant, to within tens of µs.

An event loop's own timers (``loop.call_at``; asyncio's and uvloop's alike) wait in
``epoll_wait``, whose timeout is whole milliseconds (rounded up): on the machine of
docs/performance.md a ``call_at`` ran p50 0.55 ms and p99 1.1 ms after its time at 1,000 to
10,000 timers/s.  A Linux ``timerfd`` on
``CLOCK_MONOTONIC`` (the clock of ``time.monotonic()``, shared by every process), armed at an
absolute time and watched by the loop like any other descriptor, made the same wake-ups
p50 30-40 µs and p99 160-210 µs late (the process's timer slack set to 1 ns, as
:func:`faasload.clock.set_fine_timer_slack` does).  Python has ``os.timerfd_create`` only from
3.13, so this calls the C library (glibc or musl) through ctypes.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from collections.abc import Callable

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class DeadlineTimer:
    """Calls ``fire()`` on ``loop`` once the instant given to :meth:`arm` has come (the latest
    arming counts).  Raises :class:`OSError` at creation where Linux's timerfd is missing."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fire: Callable[[], None]):
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if self._fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_create: {os.strerror(errno)}")
        self._loop = loop
        self._fire = fire
        self._spec = _Itimerspec()
        loop.add_reader(self._fd, self._expired)

    def arm(self, at_s: float) -> None:
        """Fire at monotonic ``at_s`` (at once if it has passed)."""
        seconds = int(at_s)
        nanoseconds = max(1, int((at_s - seconds) * 1e9))   # an all-zero value would disarm it
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = seconds, min(nanoseconds, 999_999_999)
        if self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_settime: {os.strerror(errno)}")

    def _expired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:   # re-armed since it became readable
            return
        self._fire()

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
