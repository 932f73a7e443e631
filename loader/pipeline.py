"""The pipeline both modes share: trace sources → scheduler → invoker pool → completions → store.

A mode supplies :class:`~loader.plan.TraceSource` objects, the users' keys and, if it
wants to know, an ``on_stored(invocation, status)`` callback, called in the caller's
thread once the invocation's terminal row is committed.  :meth:`Pipeline.run` returns
when every source ended and every sent activation is terminal, or after a stop.

Stopping (:meth:`Pipeline.request_stop`, safe in a signal handler: it only sets a
flag): injection stops at once; invocations queued in the invoker pool, and those the
scheduler never dispatched, are recorded ``cancelled`` (unless ``record_cancelled`` is off,
for a mode that resumes them: then they get no row at all); what was sent is still
completed, up to its final deadline.  A second request gives up waiting: pending
activations end ``lost`` with the reason.

A service thread (scheduler, completion tracker...) that dies of an unexpected exception
is logged at ERROR with its traceback and stops the run the same way; the summary then
holds ``failure``, and the run is never taken for finished.  A trace that cannot be read
further ends alone (:class:`loader.plan.TraceEnded`): the summary lists it in
``trace_errors`` with what it lost.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from faasload import gc_tuning
from faasload.clock import SPIN_BEFORE_DEADLINE_S, Clock, RealClock, set_fine_timer_slack
from loader.completion.resource_batches import BatchSettings, ResourceBatches
from loader.completion.tracker import CompletionTracker, Pending, TrackerSettings
from loader.completion.user_events import EventConsumer
from loader.config import UserEventsConfig
from loader.plan import TraceSource
from loader.platform.client import OpenWhiskClient
from loader.platform.keys import UserKey
from loader.progress import LiveProgress
from loader.scheduler import Scheduler
from loader.sending import common
from loader.sending.processes import ProcessInvokerPool
from loader.sending.retries import Retries, RetryPolicy
from loader.sending.threads import InvokerPool
from loader.storage.recorder import DurableSink, OnStored, Recorder
from loader.storage.summary import RunStats
from loader.storage.writer import ItemWriter

log = logging.getLogger(__name__)

#: The GIL switch interval while injecting with invoker threads (``sender_processes: 0``): a busy
#: worker thread delays the scheduler's wake-up by up to this much (Python's default is 5 ms;
#: docs/performance.md, Timing facts).  Sender processes send at the planned times themselves,
#: the scheduler handing invocations over ahead of them, so the scheduler's process keeps the
#: default: the forced switches every 0.5 ms cost its completion path ~12% of its CPU.
SWITCH_INTERVAL_S = 0.0005
SUPERVISE_S = 0.05
DRAIN_REASON = "the loader was stopped before this invocation's planned time"
GIVE_UP_REASON = "the loader was stopped a second time before the activation completed"
FAILURE_REASON = "the loader stopped after an internal failure ({failure}) before this invocation's planned time"
TRACKER_FAILED_REASON = "the loader's completion tracker failed ({failure}) before the activation completed"


def switch_interval_s(lead_s: float) -> float | None:
    """The switch interval the scheduler's process needs with a pool of this lead (None: Python's own)."""
    return SWITCH_INTERVAL_S if lead_s == 0 else None


@dataclass(frozen=True)
class PipelineSettings:
    workers: int
    tracker: TrackerSettings
    sender_processes: int = 0                # 0: the invoker threads run in this process
    max_in_flight: int = 10_000             # requests in flight at most, with sender processes
    progress_interval_s: float = 10.0
    late_threshold_us: int = 10_000
    record_cancelled: bool = True
    consumer_ready_timeout_s: float = 15.0
    invoke_retries: int = 0                  # retries of what provably did not reach the platform
    invoke_retry_backoff_s: float = 1.0
    resources: BatchSettings = BatchSettings()   # the monitor's answers, asked in batches


class Pipeline:
    def __init__(self, *, sources: Iterable[TraceSource], keys: Mapping[str, UserKey], client: OpenWhiskClient,
                 writer: ItemWriter, experiment_id: int, settings: PipelineSettings,
                 user_events: UserEventsConfig | None, monitor: Any = None, on_stored: OnStored | None = None,
                 planned_total: int | None = None, clock: Clock | None = None,
                 planned_duration_s: float | None = None, on_started: Callable[[float], None] | None = None):
        # With sender processes the scheduler has its interpreter nearly to itself: spinning
        # before each deadline (to win the GIL from invoker threads) would only burn a core.
        self.clock = clock or RealClock(spin_s=0.0 if settings.sender_processes else SPIN_BEFORE_DEADLINE_S)
        self.settings = settings
        self.sources = sources
        self.stats = RunStats(settings.late_threshold_us, planned_total)
        self.planned_duration_s = planned_duration_s
        self.live: LiveProgress | None = None   # the in-place progress line, when stderr is a terminal
        self.sink = DurableSink(writer)
        self.recorder = Recorder(self.sink, experiment_id, self.stats, on_stored=on_stored,
                                 record_unsent=settings.record_cancelled)
        self.monitor = monitor
        # Its deadlines need no spin (which would take the GIL from the scheduler in this process).
        self.resources = ResourceBatches(self.recorder, monitor, settings.resources,
                                         clock=RealClock(spin_s=0.0) if isinstance(self.clock, RealClock) else self.clock)
        self.tracker = CompletionTracker(client, settings.tracker, self._complete, clock=self.clock)
        self.stopping = threading.Event()      # stop injecting
        self._halt = threading.Event()         # stop the service threads
        self._start_s = self.clock.monotonic_s()
        self.start_epoch_s = self.clock.epoch_s()
        self.retries: Retries | None = None
        if settings.invoke_retries and not settings.sender_processes:  # sender processes retry on their loops
            self.retries = Retries(RetryPolicy.of(settings.invoke_retries, settings.invoke_retry_backoff_s),
                                   lambda item: self.pool.submit(item),
                                   lambda item: common.record_stopped(self.recorder, item, self._start_s),
                                   clock=self.clock, stopping=self.stopping)
        self.pool: common.InvokerPool
        if settings.sender_processes:
            senders = dataclasses.replace(client.settings, invoke_retries=settings.invoke_retries,
                                          retry_backoff_s=settings.invoke_retry_backoff_s)
            self.pool = ProcessInvokerPool(
                settings.sender_processes, senders, keys, self.recorder, self.tracker, clock=self.clock,
                start_s=lambda: self._start_s, stopping=self.stopping,
                max_in_flight=settings.max_in_flight)
        else:
            self.pool = InvokerPool(settings.workers, client, keys, self.recorder, self.tracker, clock=self.clock,
                                    start_s=lambda: self._start_s, stopping=self.stopping, retries=self.retries)
        self.consumer = None
        if user_events is not None:
            self.consumer = EventConsumer(user_events.bootstrap_servers, user_events.topic, self.tracker.on_events,
                                          poll_timeout_s=user_events.poll_timeout_s,
                                          fetch_wait_ms=user_events.fetch_wait_ms,
                                          accept_user_ids=frozenset(key.uuid for key in keys.values()))
        self._stop_requests = 0
        self.scheduler: Scheduler | None = None
        self.stopped_by_request = False
        self.started_epoch_s: float | None = None   # when the scheduler actually started
        self.on_started = on_started
        #: Service threads that died of an unexpected exception: thread name -> what it raised.
        self.failures: dict[str, str] = {}

    def request_stop(self) -> None:
        """Ask the run to stop (twice: stop waiting for completions). Only sets a counter."""
        self._stop_requests += 1

    def _complete(self, pending: Pending, record: dict | None, reason: str | None) -> None:
        self.resources.submit(pending, record, reason)

    # ------------------------------------------------------------------ running

    def run(self, start_at_s: float | None = None) -> dict:
        """Inject everything, wait for every completion, flush; return the summary.

        ``start_at_s`` (monotonic): the common start agreed with other shards; the planned offsets
        count from it even when this loader is ready late (then its lateness shows it)."""
        threads = []
        if self.consumer is not None:
            self.consumer.start()
            if not self.consumer.wait_ready(self.settings.consumer_ready_timeout_s):
                log.warning("user events not readable after %.0f s (%s): starting anyway, completions will be "
                            "polled until they are", self.settings.consumer_ready_timeout_s,
                            self.consumer.stats.last_error or "topic missing")
        self.pool.start()
        threads.append(self._thread(self.tracker.run, "completion-tracker", self._halt))
        threads.append(self._thread(self.resources.run, "resource-batches", self._halt))
        if self.retries is not None:
            threads.append(self._thread(self.retries.run, "invoke-retries", self._halt))
        self.scheduler = scheduler = Scheduler(self.sources, self.pool.submit, clock=self.clock, start_s=0.0,
                                               flush=self.pool.flush, lead_s=self.pool.lead_s)
        previous_interval = sys.getswitchinterval()
        sys.setswitchinterval(switch_interval_s(self.pool.lead_s) or previous_interval)
        previous_gc = gc_tuning.tune()
        try:
            if start_at_s is not None:
                while self.clock.monotonic_s() < start_at_s and not self._stop_requests:
                    self.clock.sleep_until(min(start_at_s, self.clock.monotonic_s() + SUPERVISE_S))
            now_s, self.started_epoch_s = self.clock.monotonic_s(), self.clock.epoch_s()
            self._start_s = now_s if start_at_s is None else start_at_s
            self.start_epoch_s = self.started_epoch_s - (now_s - self._start_s)
            scheduler.start_s = self._start_s
            scheduler_thread = self._thread(self._schedule, "scheduler", scheduler)
            self.live = LiveProgress.on_terminal(self.stats, self.planned_duration_s)
            self._supervise(scheduler_thread)
        finally:
            if self.live is not None:
                self.live.close()
            sys.setswitchinterval(previous_interval)
            gc_tuning.restore(previous_gc)
            self._halt.set()
            self.stopping.set()
            if self.retries is not None:
                self.retries.flush()
            self.pool.stop()
            for thread in threads:
                thread.join(10.0)
            self.tracker.close()
            self.resources.close()
            if self.consumer is not None:
                self.consumer.stop()
        self.sink.writer.flush()
        self.sink.fire()
        log.info("%s", self.stats.progress_line(self.tracker.pending_count))
        return self.summary()

    def summary(self) -> dict:
        summary = self.stats.summary()
        if self.consumer is not None:
            summary["user_events"] = {"activation_events": self.consumer.stats.activation_events,
                                      "matched": self.tracker.events_matched,
                                      "foreign": self.consumer.stats.foreign,
                                      "malformed": self.consumer.stats.malformed}
        if self.scheduler is not None and self.scheduler.stats.trace_errors:
            summary["trace_errors"] = list(self.scheduler.stats.trace_errors)
        rejected = self.sink.writer.stats.rejected
        if rejected:
            summary["store_errors"] = list(rejected)
        if isinstance(self.pool, ProcessInvokerPool) and any(self.pool.sender_stats):
            stats = self.pool.sender_stats
            summary["senders"] = {"processes": len(stats), "max_in_flight": self.settings.max_in_flight,
                                  "peak_in_flight": sum(s.get("peak_in_flight", 0) for s in stats),
                                  "held_back": sum(s.get("held", 0) for s in stats),
                                  "peak_held_ahead": sum(s.get("peak_timed", 0) for s in stats),
                                  "retries": sum(s.get("retries", 0) for s in stats),
                                  "connections_opened": sum(s.get("connections_opened", 0) for s in stats)}
        summary["stopped"] = self.stopped_by_request
        if self.failures:
            summary["failure"] = "; ".join(f"the {name} thread failed: {text}" for name, text in self.failures.items())
        return summary

    def _thread(self, target, name: str, *args) -> threading.Thread:
        thread = threading.Thread(target=self._guarded, args=(target, name, args), name=name, daemon=True)
        thread.start()
        return thread

    def _guarded(self, target, name: str, args: tuple) -> None:
        """A service thread's body: an unexpected exception is logged with its traceback and stops the run."""
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 (any death of a service thread must stop the run loudly)
            log.exception("the %s thread failed; stopping the run", name)
            self.failures[name] = f"{type(exc).__name__}: {exc}"

    def _schedule(self, scheduler: Scheduler) -> None:
        set_fine_timer_slack()
        scheduler.run(self.stopping)

    def _supervise(self, scheduler_thread: threading.Thread) -> None:
        """The main thread: stop requests, durability callbacks, progress, the end condition."""
        next_progress_s = self.clock.monotonic_s() + self.settings.progress_interval_s
        handled_requests = handled_failures = 0
        self._started()
        while True:
            if self._stop_requests > handled_requests:
                handled_requests = self._stop_requests
                self._on_stop_request(handled_requests, scheduler_thread)
            if len(self.failures) > handled_failures:
                handled_failures = len(self.failures)
                self._on_failure(scheduler_thread)
            if "resource-batches" in self.failures:
                self.resources.bypass()
            if "completion-tracker" in self.failures:
                self.tracker.give_up(TRACKER_FAILED_REASON.format(failure=self.failures["completion-tracker"]))
            self.sink.fire()
            self.sink.writer.flush(timeout_s=0)  # raises StoreError if the writer failed for good
            now_s = self.clock.monotonic_s()
            if self.live is not None:
                self.live.tick(now_s - self._start_s, self.tracker.pending_count)
            elif now_s >= next_progress_s:
                log.info("%s", self.stats.progress_line(self.tracker.pending_count))
                next_progress_s += self.settings.progress_interval_s
            if not scheduler_thread.is_alive() and self.recorder.outstanding == 0:
                return
            self._halt.wait(SUPERVISE_S)

    def _started(self) -> None:
        """Tell the mode the common start (it stores it at once: what a recovery after a crash counts from)."""
        if self.on_started is None:
            return
        try:
            self.on_started(self.start_epoch_s)
        except Exception:  # noqa: BLE001 (the summary stores the start again at the end)
            log.warning("storing the experiment's start failed; it is stored with the summary", exc_info=True)

    def _stop_injecting(self, scheduler_thread: threading.Thread, reason: str) -> None:
        """No more invocations: the scheduler ends, what it never handed out is recorded cancelled."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        if self.retries is not None:
            given_up = self.retries.flush()
            if given_up:
                log.info("%d invocations waiting to be sent again are recorded with their last answer", given_up)
        scheduler_thread.join()
        if self.settings.record_cancelled and self.scheduler is not None:
            cancelled = 0
            for invocation in self.scheduler.drain():
                self.recorder.cancelled(invocation, reason, dispatched=False)
                cancelled += 1
            log.info("%d invocations never sent are recorded as cancelled", cancelled)

    def _on_failure(self, scheduler_thread: threading.Thread) -> None:
        failure = "; ".join(self.failures.values())
        log.error("stopping the run after an internal failure (%s): no more invocations; waiting for the %d sent "
                  "activations to complete", failure, self.tracker.pending_count)
        self._stop_injecting(scheduler_thread, FAILURE_REASON.format(failure=failure))

    def _on_stop_request(self, count: int, scheduler_thread: threading.Thread) -> None:
        if count == 1:
            self.stopped_by_request = True
            log.warning("stop requested: no more invocations; waiting for the %d sent activations to complete "
                        "(stop again to give up waiting)", self.tracker.pending_count)
            self._stop_injecting(scheduler_thread, DRAIN_REASON)
        else:
            lost = self.tracker.give_up(GIVE_UP_REASON)
            log.warning("second stop request: %d pending activations recorded as lost", lost)
