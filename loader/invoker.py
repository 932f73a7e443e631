"""The invoker pool: threads that send the scheduler's due invocations.

The scheduler only puts :class:`~loader.scheduler.Dispatch` items on the queue; a
worker takes one, notes the send time (its lateness includes any wait in the queue),
performs the non-blocking invoke with the user's key and records the answer.  Once
the run is stopping, queued items are recorded ``cancelled`` instead of being sent.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Mapping

from faasload.clock import Clock

from .authkeys import UserKey
from .openwhisk import InvokeOutcome, InvokeStatus, OpenWhiskClient
from .plan import PlannedInvocation
from .recorder import Recorder
from .scheduler import Dispatch, offset_us
from .tracker import CompletionTracker

log = logging.getLogger(__name__)

CANCEL_REASON = "the loader was stopped before this invocation was sent"


class InvokerPool:
    def __init__(self, workers: int, client: OpenWhiskClient, keys: Mapping[str, UserKey], recorder: Recorder,
                 tracker: CompletionTracker, *, clock: Clock, start_s: Callable[[], float],
                 stopping: threading.Event):
        self.workers = workers
        self.client = client
        self.keys = keys
        self.recorder = recorder
        self.tracker = tracker
        self.clock = clock
        self.start_s = start_s
        self.stopping = stopping
        self.queue: queue.SimpleQueue[Dispatch | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, item: Dispatch) -> None:
        """The scheduler's dispatch: never blocks."""
        self.recorder.dispatched()
        self.queue.put(item)

    def start(self) -> None:
        for number in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"invoker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for _ in self._threads:
            self.queue.put(None)
        for thread in self._threads:
            thread.join(30.0)
        self.client.close()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            try:
                self.send(item)
            except Exception as exc:  # a bug must not lose the invocation silently  # noqa: BLE001
                log.exception("invoking %s #%d failed", item.invocation.trace_name, item.invocation.seq)
                record_unsent(self.recorder, item.invocation, offset_us(self.clock, self.start_s()),
                              f"loader error before sending: {exc}")

    def send(self, item: Dispatch) -> None:
        invocation = item.invocation
        if self.stopping.is_set():
            self.recorder.cancelled(invocation, CANCEL_REASON, dispatched=True)
            return
        user = self.keys.get(invocation.user)
        start_s = self.start_s()
        if user is None:
            record_unsent(self.recorder, invocation, offset_us(self.clock, start_s), no_key_reason(invocation),
                          InvokeStatus.HTTP_ERROR)
            return
        sent_s = self.clock.monotonic_s()
        outcome = self.client.invoke(user, invocation.action, dict(invocation.parameters),
                                     give_up=self.stopping.is_set)
        record_outcome(self.recorder, self.tracker, invocation, user, sent_s, start_s, outcome)


def record_outcome(recorder: Recorder, tracker: CompletionTracker, invocation: PlannedInvocation, user: UserKey,
                   sent_s: float, start_s: float, outcome: InvokeOutcome) -> None:
    """The invoke answer: the ``sent`` row (or a terminal failure), and the activation to track."""
    recorder.sent(invocation, round((sent_s - start_s) * 1_000_000), outcome)
    if outcome.status is InvokeStatus.ACCEPTED:
        tracker.register(invocation, recorder.key(invocation), user, outcome.activation_id, sent_s)


def no_key_reason(invocation: PlannedInvocation) -> str:
    return f"no key for user {invocation.user!r} (not sent)"


def record_unsent(recorder: Recorder, invocation: PlannedInvocation, offset: int, reason: str,
                  status: InvokeStatus = InvokeStatus.CONNECTION_ERROR) -> None:
    """A terminal failure for an invocation that got no answer from the platform (0 attempts)."""
    try:
        recorder.sent(invocation, offset, InvokeOutcome(status, 0, reason=reason))
    except Exception:  # the store failed for good: the pipeline's supervisor reports it  # noqa: BLE001
        log.exception("recording the failure of %s #%d failed", invocation.trace_name, invocation.seq)
