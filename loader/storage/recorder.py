"""What the pipeline writes for each invocation, and the durability callbacks.

Every planned invocation gets one ``runs`` row: a ``sent`` update with its parameters
when the platform accepted it, then exactly one terminal update (completed from the
activation record, failed at invoke, lost, or cancelled).  All writes go through one
:class:`DurableSink`, which tells the mode (``on_stored``) when an invocation's terminal
row has been committed: the generator checkpoints only then.  A pure mapping from facts
to rows: the completion side (:mod:`loader.completion.resources`) asks the monitor.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

from faasload.monitor_protocol import KernelPeak, PeakSource
from loader.monitor_client import MonitorAnswer, ResourcesStatus
from loader.plan import PlannedInvocation
from loader.platform.client import InvokeOutcome, InvokeStatus
from loader.storage.activation_fields import completion_fields
from loader.storage.rows import RunKey, RunParameters, RunResources, RunStatus, RunUpdate
from loader.storage.summary import RunStats
from loader.storage.writer import ItemWriter

log = logging.getLogger(__name__)

OnStored = Callable[[PlannedInvocation, RunStatus], None]
#: The kernel peak of a run the monitor gave none for (no answer, an error, an older monitor).
UNMEASURED_PEAK = KernelPeak(None, PeakSource.UNAVAILABLE)

_INVOKE_STATUS = {InvokeStatus.THROTTLED: RunStatus.THROTTLED, InvokeStatus.HTTP_ERROR: RunStatus.HTTP_ERROR,
                  InvokeStatus.CONNECTION_ERROR: RunStatus.CONNECTION_ERROR}


#: ``runs.resources_reason`` of a row whose monitor answer came after ``completion:resources_wait_s``.
LATE_ANSWER = "answered after completion:resources_wait_s (the row was written first, then updated)"


class DurableSink:
    """A :class:`StoreWriter` front that calls back once an item is committed.

    The writer commits items in the order they were written (one FIFO queue, one
    thread, whole batches), so the n-th item written through this sink is durable
    once the writer's ``items_written`` reached its number.  Callbacks run in the
    thread that calls :meth:`fire` (the pipeline's main loop).
    """

    def __init__(self, writer: ItemWriter):
        self.writer = writer
        self._lock = threading.Lock()
        self._written = writer.stats.items_written + writer.pending
        self._callbacks: collections.deque = collections.deque()

    def write(self, item, on_committed: Callable[[], None] | None = None) -> None:
        with self._lock:
            self.writer.write(item)
            self._written += 1
            if on_committed is not None:
                self._callbacks.append((self._written, on_committed))

    def write_many(self, writes: list[tuple[Any, Callable[[], None] | None]]) -> None:
        """:meth:`write` for several ``(item, on_committed)`` at once, in order, under one lock."""
        with self._lock:
            self.writer.write_many([item for item, _ in writes])
            for _, on_committed in writes:
                self._written += 1
                if on_committed is not None:
                    self._callbacks.append((self._written, on_committed))

    def fire(self) -> int:
        """Call the callbacks of every committed item; return how many ran."""
        committed = self.writer.stats.items_written
        fired = 0
        while True:
            with self._lock:
                if not self._callbacks or self._callbacks[0][0] > committed:
                    return fired
                _, callback = self._callbacks.popleft()
            try:
                callback()
            except Exception:  # a mode's callback must not stop the recording  # noqa: BLE001
                log.exception("on_stored callback failed")
            fired += 1


class Recorder:
    """Builds and writes the rows of one experiment's runs."""

    def __init__(self, sink: DurableSink, experiment_id: int, stats: RunStats, *,
                 on_stored: OnStored | None = None, record_unsent: bool = True):
        self.sink = sink
        self.experiment_id = experiment_id
        self.stats = stats
        self.on_stored = on_stored
        #: False for a mode that resumes what it never sent (the generator): no ``cancelled`` row then.
        self.record_unsent = record_unsent
        self._outstanding = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ bookkeeping

    def key(self, invocation: PlannedInvocation) -> RunKey:
        return RunKey(self.experiment_id, invocation.trace_name, invocation.seq)

    def dispatched(self) -> None:
        """An invocation left the scheduler: it is outstanding until its terminal row is written."""
        with self._lock:
            self._outstanding += 1

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def _base(self, invocation: PlannedInvocation, status: RunStatus, **fields) -> RunUpdate:
        return RunUpdate(self.key(invocation), invocation.user, invocation.action, invocation.planned_offset_us,
                         status, input_object=invocation.input_object, **fields)

    def _stored_callback(self, invocation: PlannedInvocation, status: RunStatus) -> Callable[[], None] | None:
        if self.on_stored is None:
            return None
        on_stored = self.on_stored
        def callback():
            on_stored(invocation, status)
        return callback

    def _terminal(self, invocation: PlannedInvocation, status: RunStatus, items: list, *,
                  outstanding: bool = True, **stats) -> None:
        writes: list[tuple[Any, Callable[[], None] | None]] = [(item, None) for item in items[:-1]]
        writes.append((items[-1], self._stored_callback(invocation, status)))
        self.sink.write_many(writes)
        self.stats.record_terminal(invocation.action, status, **stats)
        if outstanding:
            with self._lock:
                self._outstanding -= 1

    # ------------------------------------------------------------------ the facts

    def sent(self, invocation: PlannedInvocation, sent_offset_us: int, outcome: InvokeOutcome) -> None:
        """The invoke answer: ``sent`` with the activation id, or a terminal invoke failure."""
        self.sent_batch([(invocation, sent_offset_us, outcome)])

    def sent_batch(self, answers: list[tuple[PlannedInvocation, int, InvokeOutcome]]) -> None:
        """:meth:`sent` for several answers, written to the sink at once (one lock, one writer call)."""
        writes: list[tuple[Any, Callable[[], None] | None]] = []
        failed: list[tuple[PlannedInvocation, RunStatus]] = []
        for invocation, sent_offset_us, outcome in answers:
            lateness_us = sent_offset_us - invocation.planned_offset_us
            self.stats.record_sent(lateness_us)
            key = self.key(invocation)
            parameters = RunParameters(key, invocation.parameters)
            if outcome.status is InvokeStatus.ACCEPTED:
                writes.append((RunUpdate(key, invocation.user, invocation.action, invocation.planned_offset_us,
                                         RunStatus.SENT, input_object=invocation.input_object,
                                         sent_offset_us=sent_offset_us, lateness_us=lateness_us,
                                         invoke_http_status=outcome.http_status, invoke_attempts=outcome.attempts,
                                         activation_id=outcome.activation_id), None))
                writes.append((parameters, None))
                continue
            status = _INVOKE_STATUS[outcome.status]
            update = self._base(invocation, status, status_reason=outcome.reason, sent_offset_us=sent_offset_us,
                                lateness_us=lateness_us, invoke_http_status=outcome.http_status,
                                invoke_attempts=outcome.attempts)
            writes.append((update, None))
            writes.append((parameters, self._stored_callback(invocation, status)))
            failed.append((invocation, status))
        if not writes:
            return
        self.sink.write_many(writes)
        for invocation, status in failed:  # counted once written, as _terminal does
            self.stats.record_terminal(invocation.action, status)
        if failed:
            with self._lock:
                self._outstanding -= len(failed)

    def cancelled(self, invocation: PlannedInvocation, reason: str, *, dispatched: bool) -> None:
        """Never sent: the run was stopped first (a ``cancelled`` row, or only a count with ``record_unsent`` off)."""
        if not self.record_unsent:
            self.stats.record_unsent()
            if dispatched:
                with self._lock:
                    self._outstanding -= 1
            return
        update = self._base(invocation, RunStatus.CANCELLED, status_reason=reason)
        self._terminal(invocation, RunStatus.CANCELLED, [update, RunParameters(self.key(invocation),
                                                                              invocation.parameters)],
                       outstanding=dispatched)

    def completed(self, invocation: PlannedInvocation, activation_id: str | None, record: dict | None,
                  reason: str | None, resources: MonitorAnswer | None = None, invoker: str | None = None,
                  fields: dict | None = None) -> RunStatus:
        """The activation record (or None: lost with ``reason``) and the monitor's answer for it (None: not
        asked; ``pending``: asked, :meth:`resources_arrived` adds it later); ``invoker`` ran it (its user
        event's ``source``; without an event, the invoker whose monitor knew it, if any); ``fields``: the record's
        :func:`~loader.storage.activation_fields.completion_fields`, when the caller mapped them already.
        Returns the run's terminal status."""
        if invoker is None and resources is not None:
            invoker = resources.invoker
        if record is None:
            update = self._base(invocation, RunStatus.LOST, status_reason=reason, activation_id=activation_id,
                                invoker=invoker)
            self._terminal(invocation, RunStatus.LOST, [update])
            return RunStatus.LOST
        fields = completion_fields(record) if fields is None else dict(fields)   # mapped already: a copy
        items: list = []
        peak = None
        if resources is not None:
            fields["resources_status"] = resources.status.value
            if resources.reason:
                fields["resources_reason"] = resources.reason
            if resources.status is not ResourcesStatus.PENDING:  # the answer brings them
                fields.update(_kernel_peak_fields(resources))
            items, peak = self._samples(invocation, resources)
        status = fields.pop("status")
        update = self._base(invocation, status, activation_id=activation_id, invoker=invoker, **fields)
        self._terminal(invocation, status, [update] + items, duration_ms=fields["duration_ms"],
                       wait_time_ms=fields["wait_time_ms"], cold_start=fields["cold_start"],
                       peak_memory_bytes=peak, has_record=True,
                       resources_status=fields.get("resources_status"))
        return status

    def resources_arrived(self, invocation: PlannedInvocation, status: RunStatus, resources: MonitorAnswer) -> None:
        """The monitor's answer for a run already recorded ``status`` with resources ``pending``: the
        same row gets the answer's status and reason (an update of its key), its invoker when the
        answer names one, and its samples."""
        late = LATE_ANSWER
        update = self._base(invocation, status, resources_status=resources.status.value,
                            resources_reason=f"{resources.reason}; {late}" if resources.reason else late,
                            invoker=resources.invoker, **_kernel_peak_fields(resources))
        items, peak = self._samples(invocation, resources)
        self.sink.write_many([(item, None) for item in [update] + items])
        self.stats.record_late_resources(invocation.action, resources.status.value, peak)

    def _samples(self, invocation: PlannedInvocation, resources: MonitorAnswer) -> tuple[list, int | None]:
        """The answer's samples as an item (none without samples), and their peak memory."""
        if not resources.samples:
            return [], None
        memory = [m for m in resources.samples.memory_bytes if m is not None]
        return [RunResources(self.key(invocation), resources.samples)], max(memory) if memory else None


def _kernel_peak_fields(resources: MonitorAnswer) -> dict:
    """The run columns of the kernel's peak in the monitor's answer (unavailable when it gave none)."""
    kernel_peak = resources.kernel_peak or UNMEASURED_PEAK
    return {"kernel_peak_memory_bytes": kernel_peak.memory_bytes, "kernel_peak_source": kernel_peak.source.value}
