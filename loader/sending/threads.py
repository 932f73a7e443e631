"""The invoker pool: threads that send the scheduler's due invocations.

The scheduler only puts :class:`~loader.scheduler.Dispatch` items on the queue; a
worker takes one, notes the send time (its lateness includes any wait in the queue),
performs the non-blocking invoke with the user's key and records the answer (or hands it
to ``retries``, which reschedules it: a worker never sleeps for a retry).  Once the run is
stopping, queued items are recorded ``cancelled`` instead of being sent.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping

from faasload.clock import Clock
from loader.completion.tracker import CompletionTracker
from loader.platform.client import InvokeStatus, OpenWhiskClient
from loader.platform.keys import UserKey
from loader.scheduler import Dispatch, offset_us
from loader.sending.common import no_key_reason, record_answer, record_stopped, record_unsent
from loader.sending.retries import Retries
from loader.storage.recorder import Recorder

log = logging.getLogger(__name__)

class InvokerPool:
    """The :class:`~loader.sending.common.InvokerPool` whose threads run in the scheduler's process."""

    def __init__(self, workers: int, client: OpenWhiskClient, keys: Mapping[str, UserKey], recorder: Recorder,
                 tracker: CompletionTracker, *, clock: Clock, start_s: Callable[[], float],
                 stopping: threading.Event, retries: Retries | None = None):
        self.workers = workers
        self.lead_s = 0.0   # threads send what they take at once: the scheduler hands it over when due
        self.retries = retries
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
        """The scheduler's dispatch (or a retry's): never blocks."""
        if item.attempt == 1:
            self.recorder.dispatched()
        self.queue.put(item)

    def flush(self) -> None:
        """Nothing to do: each submit is queued for the threads at once."""

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
                              f"loader error before sending: {exc}", attempts=item.attempt - 1)

    def send(self, item: Dispatch) -> None:
        invocation = item.invocation
        start_s = self.start_s()
        if self.stopping.is_set():
            record_stopped(self.recorder, item, start_s)
            return
        user = self.keys.get(invocation.user)
        if user is None:
            record_unsent(self.recorder, invocation, offset_us(self.clock, start_s), no_key_reason(invocation),
                          InvokeStatus.HTTP_ERROR)
            return
        sent_s = self.clock.monotonic_s()
        outcome = self.client.invoke(user, invocation.action, dict(invocation.parameters))
        record_answer(self.recorder, self.tracker, self.retries, item, user, sent_s, start_s, outcome)
