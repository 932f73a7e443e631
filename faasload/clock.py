"""Clocks: every loop is a ``tick()`` plus an injected clock, so tests drive it without waiting.

Times are seconds as floats on the clock's own monotonic timeline, except
:meth:`Clock.epoch_s`, which is wall-clock time for the records.
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import Protocol

_PR_SET_TIMERSLACK = 29
#: Sleep until this long before a deadline, then spin: ``time.sleep`` oversleeps ~55 µs at
#: p50 with millisecond tails (docs/performance.md, Timing facts).
SPIN_BEFORE_DEADLINE_S = 0.0003


class Clock(Protocol):
    def monotonic_s(self) -> float: ...
    def epoch_s(self) -> float: ...
    def sleep_until(self, deadline_s: float, wake: threading.Event | None = None) -> None:
        """Return at ``deadline_s`` (monotonic), or as soon as ``wake`` is set."""
        ...


class RealClock:
    """The system clocks; ``sleep_until`` sleeps to just before the deadline, then spins."""

    def __init__(self, spin_s: float = SPIN_BEFORE_DEADLINE_S):
        self.spin_s = spin_s

    #: The functions themselves, not methods calling them: the monitor's sampler dates every
    #: sample, and a Python frame around ``time.time`` costs more than the call.
    monotonic_s = staticmethod(time.monotonic)
    epoch_s = staticmethod(time.time)

    def sleep_until(self, deadline_s: float, wake: threading.Event | None = None) -> None:
        """Return at ``deadline_s`` (monotonic), or as soon as ``wake`` is set."""
        remaining = deadline_s - time.monotonic() - self.spin_s
        if remaining > 0:
            if wake is not None:
                if wake.wait(remaining):
                    return
            else:
                time.sleep(remaining)
        while time.monotonic() < deadline_s:
            if wake is not None and wake.is_set():
                return


class FakeClock:
    """A clock for unit tests: ``sleep_until`` jumps to the deadline."""

    def __init__(self, start_s: float = 1000.0, epoch_offset_s: float = 1_700_000_000.0):
        self.now_s = start_s
        self.epoch_offset_s = epoch_offset_s

    def monotonic_s(self) -> float:
        return self.now_s

    def epoch_s(self) -> float:
        return self.epoch_offset_s + self.now_s

    def sleep_until(self, deadline_s: float, wake: threading.Event | None = None) -> None:
        self.now_s = max(self.now_s, deadline_s)

    def advance(self, delta_s: float) -> None:
        self.now_s += delta_s


def set_fine_timer_slack() -> bool:
    """Set this thread's timer slack to 1 ns (Linux); return whether it worked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
