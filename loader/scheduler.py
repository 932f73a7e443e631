"""One scheduler over all traces: a heap of absolute deadlines from a common start.

The heap holds at most one pending invocation per trace (the next one); when it is
handed out, the next line of that trace is read.  Due invocations are handed to
``dispatch`` (the invoker pool's queue), then ``flush`` once per tick (so a pool can
send a tick's invocations in one batch), and the scheduler never waits on a
response.  With a ``lead_s``, invocations are handed out up to that long before they are due,
to a pool that sends each at its planned time (the sender processes): the scheduler wakes when
the next one is half the lead away and hands out everything due within the lead, so its own
delays cost no lateness as long as they are shorter than half the lead.  An invocation that is
already late is handed out at once and counted late, never dropped.  ``tick()`` does one round;
``run()`` repeats it, sleeping to the next deadline (less half the lead) on the injected clock.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from faasload.clock import Clock
from loader.plan import PlannedInvocation, TraceEnded, TraceSource

if TYPE_CHECKING:
    from loader.platform.client import InvokeOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """An invocation handed to the invoker pool, with when the scheduler handed it out.

    A retry (:mod:`loader.sending.retries`) hands it out again as attempt ``attempt``, with the
    time the first attempt was sent and the previous attempt's answer.
    """

    invocation: PlannedInvocation
    dispatched_offset_us: int
    attempt: int = 1
    first_sent_s: float | None = None
    previous: InvokeOutcome | None = None

    @property
    def dispatch_lateness_us(self) -> int:
        return self.dispatched_offset_us - self.invocation.planned_offset_us


@dataclass
class SchedulerStats:
    dispatched: int = 0
    traces_ended: int = 0
    #: One report per trace that could not be read to its end (:meth:`loader.plan.TraceEnded.report`).
    trace_errors: list[dict] = field(default_factory=list)
    max_dispatch_lateness_us: int = 0


def offset_us(clock: Clock, start_s: float) -> int:
    """Microseconds since ``start_s`` on ``clock``'s monotonic timeline."""
    return round((clock.monotonic_s() - start_s) * 1_000_000)


class Scheduler:
    """Merge many :class:`TraceSource` on one heap of absolute deadlines."""

    def __init__(self, sources: Iterable[TraceSource], dispatch: Callable[[Dispatch], None], *,
                 clock: Clock, start_s: float, flush: Callable[[], None] | None = None, lead_s: float = 0.0):
        self.clock = clock
        self.start_s = start_s
        self.lead_us = round(lead_s * 1_000_000)
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
        except TraceEnded as exc:  # e.g. the file changed since it was validated: this trace ends, not the run
            self._trace_ended(source, exc)
            invocation = None
        if invocation is None:
            self.stats.traces_ended += 1
            return
        heapq.heappush(self._heap, (invocation.planned_offset_us, index, invocation))

    def _trace_ended(self, source: TraceSource, exc: TraceEnded) -> None:
        report = {"trace": source.name, **exc.report()}
        self.stats.trace_errors.append(report)
        lost = "an unknown number of" if exc.lost is None else str(exc.lost)
        log.error("trace %s ended early, %s of its planned invocations will not be sent: %s", source.name, lost, exc)

    @property
    def finished(self) -> bool:
        return not self._heap

    def next_due_s(self) -> float | None:
        """The monotonic time of the next invocation, or None when every trace ended."""
        if not self._heap:
            return None
        return self.start_s + self._heap[0][0] / 1_000_000

    def tick(self) -> float | None:
        """Hand out every invocation due within the lead; return the next deadline (None: all done)."""
        while self._heap:
            now_us = offset_us(self.clock, self.start_s)
            planned_us, index, invocation = self._heap[0]
            if planned_us > now_us + self.lead_us:
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
        # With a lead, wake when the next invocation is half the lead away and hand out all that
        # come due within the lead: a batch of half a lead per tick, each handed out at least half
        # a lead ahead (one wake-up and one pipe write per sender per batch, not per invocation).
        wake_ahead_s = self.lead_us / 2_000_000
        while not stop.is_set():
            due_s = self.tick()
            if due_s is None:
                return
            self.clock.sleep_until(due_s - wake_ahead_s, stop)

    def drain(self) -> Iterable[PlannedInvocation]:
        """After a stop: every invocation never handed out (heap first, then the rest of each trace)."""
        pending = sorted(self._heap)
        self._heap = []
        for _, _index, queued in pending:
            yield queued
        for source in self._sources:
            while True:
                try:
                    invocation = source.next_invocation()
                except TraceEnded as exc:
                    self._trace_ended(source, exc)
                    break
                except Exception:  # noqa: BLE001 (a broken source must not hide the others' invocations)
                    log.exception("trace %s cannot be drained", source.name)
                    break
                if invocation is None:
                    break
                yield invocation
