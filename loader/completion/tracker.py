"""The activations this run started and is waiting for, and when to fetch their records.

Every sent activation is *pending* until its record is fetched or its final deadline
passes.  A user event makes the record due at once (retried while 404 with a backoff
from ``record_retry_s`` doubling up to ``poll_interval_s``); without an event, the
record is polled every ``poll_interval_s`` from ``event_timeout_s`` after sending.
After ``final_deadline_s`` the run ends ``lost`` with the reason.  ``tick()`` only decides
what is due and hands it over, in one call, to the fetcher (by default a
:class:`~loader.completion.fetch_process.FetchProcess`: every due fetch in flight at once on
an event loop in a process of its own, up to ``fetches_in_flight``).  Events may arrive before the
invoker registered the activation (a fast action): they are kept for a while.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from faasload.clock import Clock
from faasload.retry import Backoff
from loader.completion.user_events import ActivationEvent
from loader.plan import PlannedInvocation
from loader.platform.client import FetchOutcome, FetchStatus, OpenWhiskClient
from loader.platform.keys import UserKey
from loader.storage.rows import RunKey

log = logging.getLogger(__name__)

#: How long an event for an unknown activation is kept, in case its invoke answer is late.
EARLY_EVENT_KEEP_S = 120.0
EARLY_EVENT_MAX = 100_000
#: How often the early events are looked at for the stale ones (not at every tick: the tracker
#: ticks on every batch of events, and up to EARLY_EVENT_MAX of them may wait).
EARLY_EVENT_SWEEP_S = 1.0


@dataclass(frozen=True)
class TrackerSettings:
    event_timeout_s: float
    poll_interval_s: float
    record_retry_s: float
    final_deadline_s: float
    fetches_in_flight: int


@dataclass(eq=False)
class Pending:
    """One sent activation waiting for its record."""

    invocation: PlannedInvocation
    key: RunKey
    user: UserKey
    activation_id: str
    sent_s: float
    deadline_s: float
    record_retries: int = 0   # fetches answered 404 after the event
    event_seen: bool = False
    in_flight: bool = False
    generation: int = 0
    fetches: int = 0
    last_answer: str | None = None
    source: str | None = None  # the invoker that ran it, from its user event


#: ``complete(pending, record)``: record is the activation record, or None when lost (with a reason).
Complete = Callable[[Pending, dict | None, str | None], None]


#: ``done(answers)``: fetched records, as ``(pending, outcome)``, several at a time.
Done = Callable[[list[tuple[Pending, FetchOutcome]]], None]


class Fetcher(Protocol):
    """Fetches activation records: ``done`` gets their outcomes, in any thread, at any time, in batches."""

    def fetch(self, pendings: list[Pending], done: Done) -> None: ...
    def close(self) -> None: ...


class CompletionTracker:
    def __init__(self, client: OpenWhiskClient, settings: TrackerSettings, complete: Complete, *, clock: Clock,
                 fetcher: Fetcher | None = None):
        self.client = client
        self.settings = settings
        self.complete = complete
        self.clock = clock
        self.events_matched = 0
        self.lost = 0
        self._pending: dict[str, Pending] = {}
        self._early: dict[str, tuple[float, str | None]] = {}  # activation id -> (seen at, source)
        self._heap: list[tuple[float, int, str, int]] = []
        self._counter = 0
        self._early_sweep_s = 0.0   # when the early events are next looked at
        self._lock = threading.Lock()
        self.wake = threading.Event()
        if fetcher is None:
            from loader.completion.fetch_process import FetchProcess  # it needs Pending, defined here
            fetcher = FetchProcess(client.settings, settings.fetches_in_flight)
        self.fetcher = fetcher
        self._record_backoff = Backoff(settings.record_retry_s, max(settings.record_retry_s, settings.poll_interval_s))

    # ------------------------------------------------------------------ inputs (any thread)

    def register(self, invocation: PlannedInvocation, key: RunKey, user: UserKey, activation_id: str,
                 sent_s: float) -> None:
        s = self.settings
        pending = Pending(invocation, key, user, activation_id, sent_s, sent_s + s.final_deadline_s)
        with self._lock:
            self._pending[activation_id] = pending
            early = self._early.pop(activation_id, None)
            if early is not None:
                pending.event_seen = True
                pending.source = early[1]
                self.events_matched += 1
                self._schedule(pending, self.clock.monotonic_s())
            else:
                self._schedule(pending, sent_s + s.event_timeout_s)
        self.wake.set()

    def on_events(self, events: list[ActivationEvent]) -> None:
        """User events (a poll's worth): their records are due now.  One lock and one wake-up
        for the lot: the consumer's thread and the tracker's take turns on the GIL less often."""
        matched = False
        now_s = self.clock.monotonic_s()
        with self._lock:
            for event in events:
                pending = self._pending.get(event.activation_id)
                if pending is None:
                    if len(self._early) < EARLY_EVENT_MAX:
                        self._early[event.activation_id] = (now_s, event.source)
                    continue
                if pending.event_seen:
                    continue
                pending.event_seen = True
                pending.source = event.source
                self.events_matched += 1
                matched = True
                if not pending.in_flight:
                    self._schedule(pending, now_s)
        if matched:
            self.wake.set()

    @property
    def fetcher_stats(self) -> dict:
        """What the fetcher counted (fetches, connections opened, peak in flight), once closed."""
        return dict(getattr(self.fetcher, "stats", None) or {})

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ the loop

    def _schedule(self, pending: Pending, due_s: float) -> None:
        pending.generation += 1
        self._counter += 1
        heapq.heappush(self._heap, (min(due_s, pending.deadline_s), self._counter, pending.activation_id,
                                    pending.generation))

    def tick(self) -> float | None:
        """Start the fetches that are due; return the next due time (None: nothing scheduled)."""
        now_s = self.clock.monotonic_s()
        due: list[Pending] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now_s:
                _, _, activation_id, generation = heapq.heappop(self._heap)
                pending = self._pending.get(activation_id)
                if pending is None or pending.generation != generation or pending.in_flight:
                    continue
                pending.in_flight = True
                due.append(pending)
            if self._early and now_s >= self._early_sweep_s:
                self._forget_early(now_s)
                self._early_sweep_s = now_s + EARLY_EVENT_SWEEP_S
        if due:
            self.fetcher.fetch(due, self._answered)
        with self._lock:
            return self._heap[0][0] if self._heap else None

    def _forget_early(self, now_s: float) -> None:
        """Drop the early events older than EARLY_EVENT_KEEP_S.  They are kept in arrival order,
        so the scan stops at the first one still fresh."""
        stale = []
        for activation_id, (seen_s, _) in self._early.items():
            if now_s - seen_s <= EARLY_EVENT_KEEP_S:
                break
            stale.append(activation_id)
        for activation_id in stale:
            del self._early[activation_id]

    def run(self, stop: threading.Event, *, idle_s: float = 0.1) -> None:
        """Tick until ``stop`` is set, waking on new work."""
        while not stop.is_set():
            next_s = self.tick()
            now_s = self.clock.monotonic_s()
            until_s = now_s + idle_s if next_s is None else min(next_s, now_s + idle_s)
            self.wake.clear()
            self.clock.sleep_until(until_s, self.wake)

    # ------------------------------------------------------------------ answers (the fetcher's thread)

    def _answered(self, answers: list[tuple[Pending, FetchOutcome]]) -> None:
        """Fetch outcomes (the fetcher's batch): found records complete their runs, the rest are
        scheduled again or, past their deadline, lost.  One lock for the batch."""
        now_s = self.clock.monotonic_s()
        finished: list[tuple[Pending, dict | None, str | None]] = []
        retried = False
        with self._lock:
            for pending, outcome in answers:
                if self._pending.get(pending.activation_id) is not pending:
                    continue  # given up meanwhile (the run was stopped)
                pending.in_flight = False
                pending.fetches += 1
                if outcome.status is FetchStatus.FOUND:
                    del self._pending[pending.activation_id]
                    finished.append((pending, outcome.record, None))
                elif now_s >= pending.deadline_s:
                    del self._pending[pending.activation_id]
                    self.lost += 1
                    finished.append((pending, None, self._lost_reason(pending, outcome)))
                else:
                    retried = True
                    pending.last_answer = outcome.reason
                    if outcome.status is FetchStatus.ERROR:
                        log.debug("activation %s: %s; retrying", pending.activation_id, outcome.reason)
                    if pending.event_seen:
                        pending.record_retries += 1
                        self._schedule(pending, now_s + self._record_backoff.delay_s(pending.record_retries))
                    else:
                        self._schedule(pending, now_s + self.settings.poll_interval_s)
        for pending, record, reason in finished:
            self._complete(pending, record, reason)
        if retried:
            self.wake.set()

    def _lost_reason(self, pending: Pending, outcome: FetchOutcome) -> str:
        seen = "received" if pending.event_seen else "not received"
        return (f"no activation record {self.settings.final_deadline_s:g} s after sending "
                f"(user event {seen}; {pending.fetches} fetches; last answer: {outcome.reason})")

    def _complete(self, pending: Pending, record: dict | None, reason: str | None) -> None:
        try:
            self.complete(pending, record, reason)
        except Exception:  # noqa: BLE001
            log.exception("recording the completion of activation %s failed", pending.activation_id)

    # ------------------------------------------------------------------ stopping

    def give_up(self, reason: str) -> int:
        """End every pending activation now as lost with ``reason``; return how many."""
        with self._lock:
            abandoned = list(self._pending.values())
            self._pending.clear()
            self._heap.clear()
            self.lost += len(abandoned)
        for pending in abandoned:
            self._complete(pending, None, reason)
        return len(abandoned)

    def close(self) -> None:
        """Wait for the fetches in flight (each within the client's timeout) and stop the fetcher."""
        self.fetcher.close()
