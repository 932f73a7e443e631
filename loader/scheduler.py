"""One scheduler over all traces: a heap of absolute deadlines from a common start.

The heap holds at most one pending invocation per trace (the next one); when it is
handed out, the next line of that trace is read.  Due invocations are handed to
``dispatch`` (the invoker pool's queue), then ``flush`` once per tick (so a pool can
send a tick's invocations in one batch), and the scheduler never waits on a
response.  An invocation that is already late is handed out at once and counted
late, never dropped.  ``tick()`` does one round; ``run()`` repeats it, sleeping to the
next deadline on the injected clock.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from faasload.clock import Clock
from loader.plan import PlannedInvocation, TraceSource

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """An invocation handed to the invoker pool, with when the scheduler handed it out."""

    invocation: PlannedInvocation
    dispatched_offset_us: int

    @property
    def dispatch_lateness_us(self) -> int:
        return self.dispatched_offset_us - self.invocation.planned_offset_us


@dataclass
class SchedulerStats:
    dispatched: int = 0
    traces_ended: int = 0
    trace_errors: list[str] = field(default_factory=list)
    max_dispatch_lateness_us: int = 0


def offset_us(clock: Clock, start_s: float) -> int:
    """Microseconds since ``start_s`` on ``clock``'s monotonic timeline."""
    return round((clock.monotonic_s() - start_s) * 1_000_000)


class Scheduler:
    """Merge many :class:`TraceSource` on one heap of absolute deadlines."""

    def __init__(self, sources: Iterable[TraceSource], dispatch: Callable[[Dispatch], None], *,
                 clock: Clock, start_s: float, flush: Callable[[], None] | None = None):
        self.clock = clock
        self.start_s = start_s
        self.dispatch = dispatch
        self.flush = flush
        self.stats = SchedulerStats()
        self._sources: list[TraceSource] = []
        self._heap: list[tuple[int, int, PlannedInvocation]] = []
        for source in sources:
            self._sources.append(source)
            self._pull(len(self._sources) - 1)

    def _pull(self, index: int) -> None:
        """Put the next invocation of source ``index`` on the heap (or note that it ended)."""
        source = self._sources[index]
        try:
            invocation = source.next_invocation()
        except ValueError as exc:  # TraceError: the file changed since it was validated
            log.error("trace %s stopped: %s", source.name, exc)
            self.stats.trace_errors.append(str(exc))
            invocation = None
        if invocation is None:
            self.stats.traces_ended += 1
            return
        heapq.heappush(self._heap, (invocation.planned_offset_us, index, invocation))

    @property
    def finished(self) -> bool:
        return not self._heap

    def next_due_s(self) -> float | None:
        """The monotonic time of the next invocation, or None when every trace ended."""
        if not self._heap:
            return None
        return self.start_s + self._heap[0][0] / 1_000_000

    def tick(self) -> float | None:
        """Hand out every invocation due now; return the next deadline (None: all done)."""
        while self._heap:
            now_us = offset_us(self.clock, self.start_s)
            planned_us, index, invocation = self._heap[0]
            if planned_us > now_us:
                break
            heapq.heappop(self._heap)
            item = Dispatch(invocation, now_us)
            self.dispatch(item)
            self.stats.dispatched += 1
            if item.dispatch_lateness_us > self.stats.max_dispatch_lateness_us:
                self.stats.max_dispatch_lateness_us = item.dispatch_lateness_us
            self._pull(index)
        if self.flush is not None:
            self.flush()
        return self.next_due_s()

    def run(self, stop: threading.Event) -> None:
        """Tick until every trace ended or ``stop`` is set."""
        while not stop.is_set():
            due_s = self.tick()
            if due_s is None:
                return
            self.clock.sleep_until(due_s, stop)

    def drain(self) -> Iterable[PlannedInvocation]:
        """After a stop: every invocation never handed out (heap first, then the rest of each trace)."""
        pending = sorted(self._heap)
        self._heap = []
        for _, index, invocation in pending:
            yield invocation
        for source in self._sources:
            while True:
                try:
                    invocation = source.next_invocation()
                except ValueError as exc:
                    log.error("trace %s: %s", source.name, exc)
                    break
                if invocation is None:
                    break
                yield invocation
