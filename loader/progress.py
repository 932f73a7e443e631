"""The live progress line: one line on a terminal, rewritten in place while the run goes on.

    0:42/3:00 · 2,480/10,800 issued · 59.8/s · 2,391 completed · 3 late · 0 throttled · 1 errors · p99 lateness 10 s 0.41 ms · ETA 2:18

Used when stderr is a terminal (otherwise the pipeline logs its periodic progress lines, as
journald wants them). Log records written meanwhile first erase the line (a filter on the
stderr handlers), and the next tick draws it again below them.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from typing import TextIO

from loader.storage.rows import RunStatus
from loader.storage.summary import RunStats, percentile

#: How often the line is redrawn, and the window of its rate and lateness p99.
REDRAW_S = 0.5
WINDOW_S = 10.0
ERASE = "\r\x1b[K"


def clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _EraseFirst(logging.Filter):
    """Erases the progress line before a record goes to the terminal."""

    def __init__(self, stream: TextIO):
        super().__init__()
        self.stream = stream

    def filter(self, record: logging.LogRecord) -> bool:
        self.stream.write(ERASE)
        return True


class LiveProgress:
    """Call :meth:`tick` often (it redraws every :data:`REDRAW_S`), :meth:`close` at the end."""

    def __init__(self, stream: TextIO, stats: RunStats, *, planned_duration_s: float | None):
        self.stream = stream
        self.stats = stats
        self.planned_duration_s = planned_duration_s
        self._history: deque[tuple[float, int]] = deque([(0.0, 0)])  # (elapsed s, issued so far)
        self._next_draw_s = 0.0
        self._filter = _EraseFirst(stream)
        self._handlers = [h for h in logging.getLogger().handlers
                          if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is stream]
        for handler in self._handlers:
            handler.addFilter(self._filter)

    @classmethod
    def on_terminal(cls, stats: RunStats, planned_duration_s: float | None,
                    stream: TextIO | None = None) -> LiveProgress | None:
        """A live line on ``stream`` (stderr) when it is a terminal, else None."""
        stream = stream or sys.stderr
        return cls(stream, stats, planned_duration_s=planned_duration_s) if stream.isatty() else None

    def line(self, elapsed_s: float, pending: int) -> str:
        stats = self.stats
        issued = stats.issued
        self._history.append((elapsed_s, issued))
        while len(self._history) > 1 and self._history[0][0] < elapsed_s - WINDOW_S:
            self._history.popleft()
        since_s, issued_then = self._history[0]
        rate = (issued - issued_then) / (elapsed_s - since_s) if elapsed_s > since_s else 0.0
        p99 = percentile(stats.lateness_us[issued_then:issued], 0.99)
        planned = stats.planned_total
        total = f"/{clock_text(self.planned_duration_s)}" if self.planned_duration_s else ""
        parts = [f"{clock_text(elapsed_s)}{total}",
                 f"{issued:,}/{planned:,} issued" if planned is not None else f"{issued:,} issued",
                 f"{rate:,.1f}/s", f"{stats.completed:,} completed", f"{stats.late:,} late",
                 f"{stats.statuses.get(RunStatus.THROTTLED, 0):,} throttled", f"{stats.errors:,} errors",
                 f"p99 lateness 10 s {'–' if p99 is None else f'{p99 / 1000:.3g} ms'}"]
        if self.planned_duration_s and elapsed_s < self.planned_duration_s:
            parts.append(f"ETA {clock_text(self.planned_duration_s - elapsed_s)}")
        elif planned is not None and issued >= planned:
            parts.append(f"completing {pending:,} pending")
        return " · ".join(parts)

    def tick(self, elapsed_s: float, pending: int) -> None:
        if elapsed_s < self._next_draw_s:
            return
        self._next_draw_s = elapsed_s + REDRAW_S
        self.stream.write(ERASE + self.line(elapsed_s, pending))
        self.stream.flush()

    def close(self) -> None:
        """End the line (what it showed stays on the terminal) and stop erasing before records."""
        self.stream.write("\n")
        self.stream.flush()
        for handler in self._handlers:
            handler.removeFilter(self._filter)
