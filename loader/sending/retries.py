"""Invocations sent again: only what provably never reached the platform, rescheduled, never slept on.

With ``openwhisk:invoke_retries`` > 0, an invoke answer that proves the platform did not process
the call (:attr:`loader.platform.client.InvokeOutcome.not_processed`: no connection could be
opened, 429, or 503 with ``Retry-After``) is not recorded yet: the invocation is put on a heap
of absolute deadlines and handed to the invoker pool again when due.  Any other failure (a 5xx
after the body was sent, a connection lost after sending, a timeout) is recorded at once: the
action may have run, and sending it again could run it twice.  The wait is the one backoff policy
(:class:`faasload.retry.Backoff`: full jitter, doubling from ``invoke_retry_backoff_s``, capped at
32 times it), never shorter than a ``Retry-After`` of the platform (itself cut to the cap).
No sender thread ever sleeps for a retry: it goes on with the next invocation.  The sender
processes' event loops (:mod:`loader.sending.event_loop`) apply the same :class:`RetryPolicy`.

Once the run is stopping, nothing is rescheduled: a waiting invocation is recorded with the
answer of its last attempt (``give_up``).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from faasload.clock import Clock
from faasload.retry import Backoff
from loader.platform.client import InvokeOutcome, InvokeStatus
from loader.scheduler import Dispatch

log = logging.getLogger(__name__)

#: The cap of the backoff, in multiples of its first wait.
CAP_FACTOR = 32


@dataclass(frozen=True)
class RetryPolicy:
    """Whether and when to send an invocation again (``max_retries`` retries after the first attempt)."""

    max_retries: int
    backoff: Backoff

    @classmethod
    def of(cls, max_retries: int, first_s: float) -> RetryPolicy:
        return cls(max_retries, Backoff(first_s, first_s * CAP_FACTOR, full_jitter=True))

    def delay_s(self, outcome: InvokeOutcome, attempt: int) -> float | None:
        """The wait before sending again after attempt ``attempt`` answered ``outcome``; None: do not."""
        if outcome.status is InvokeStatus.ACCEPTED or not outcome.not_processed or attempt > self.max_retries:
            return None
        delay_s = self.backoff.delay_s(attempt)
        if outcome.retry_after_s is not None:  # never sooner than the platform asked (up to the cap)
            delay_s = max(delay_s, min(outcome.retry_after_s, self.backoff.cap_s))
        return delay_s


class Retries:
    """The heap of invocations waiting to be sent again; ``run()`` hands them to ``resend`` when due."""

    def __init__(self, policy: RetryPolicy, resend: Callable[[Dispatch], None], give_up: Callable[[Dispatch], None],
                 *, clock: Clock, stopping: threading.Event):
        self.policy = policy
        self.resend = resend
        self.give_up = give_up
        self.clock = clock
        self.stopping = stopping
        self.rescheduled = 0
        self._heap: list[tuple[float, int, Dispatch]] = []
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self.wake = threading.Event()

    def offer(self, item: Dispatch, outcome: InvokeOutcome, sent_s: float) -> bool:
        """Reschedule ``item`` after its answer ``outcome`` if that is safe; False: record the answer now."""
        delay_s = self.policy.delay_s(outcome, item.attempt)
        if delay_s is None or self.stopping.is_set():
            return False
        first_sent_s = item.first_sent_s if item.first_sent_s is not None else sent_s
        previous = dataclasses.replace(outcome, attempts=item.attempt)
        again = Dispatch(item.invocation, item.dispatched_offset_us, item.attempt + 1, first_sent_s, previous)
        with self._lock:
            heapq.heappush(self._heap, (self.clock.monotonic_s() + delay_s, next(self._counter), again))
            self.rescheduled += 1
        self.wake.set()
        return True

    @property
    def waiting(self) -> int:
        return len(self._heap)

    def tick(self) -> float | None:
        """Hand out every retry due now (or give it up when stopping); return the next due time."""
        due = []
        with self._lock:
            now_s = self.clock.monotonic_s()
            while self._heap and (self._heap[0][0] <= now_s or self.stopping.is_set()):
                due.append(heapq.heappop(self._heap)[2])
            next_s = self._heap[0][0] if self._heap else None
        for item in due:
            (self.give_up if self.stopping.is_set() else self.resend)(item)
        return next_s

    def run(self, halt: threading.Event, *, idle_s: float = 0.1) -> None:
        """Tick until ``halt`` is set, waking on new retries (a plain wait: a retry needs no spin to its
        deadline, and a spinning thread would hold the GIL the scheduler's thread needs)."""
        while not halt.is_set():
            self.wake.clear()
            next_s = self.tick()
            now_s = self.clock.monotonic_s()
            self.wake.wait(idle_s if next_s is None else max(0.0, min(next_s - now_s, idle_s)))

    def flush(self) -> int:
        """Give up every waiting retry now (the run stops); return how many."""
        with self._lock:
            waiting = [entry[2] for entry in self._heap]
            self._heap.clear()
        for item in waiting:
            self.give_up(item)
        return len(waiting)
