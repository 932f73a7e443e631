"""The monitor's samples of completed activations, asked in batches, off the record-fetch path.

The thread that reads the record-fetch process's outcomes hands each completed activation (with
its record) to :class:`ResourceBatches` and goes back to reading.  The stage collects completions
for up to ``batch_wait_s`` after the first one, or until ``batch_max`` of them, asks the monitor
once for all of them (``samples_for_activations``: one connection, one answer) in one of a few
query threads, so that a slow monitor never stops the collection, and records each run with its
record and answer.

A batch whose answer is not in its wait after it was asked is recorded without it, with
``resources_status`` ``pending``; the answer, when it comes (at most the monitor client's timeout
later), updates that same row (:meth:`loader.storage.recorder.Recorder.resources_arrived`): one row
per run either way, and a slow monitor does not delay the rows for long.

The wait follows the monitor: 1.5 × the p90 of the last ``ANSWER_TIMES`` batches' answer times,
between ``answer_wait_s`` (``completion:resources_wait_s``) and ``answer_wait_max_s``
(``completion:resources_wait_max_s``).  A row written ``pending`` is written twice (its update,
then the answer's), and those second writes are what a loaded machine can least afford: with a
fixed 50 ms, a monitor answering in p50 120 ms (the completion bench at 5,000/s with the monitor on,
on a machine shared with other jobs) had 60% of the rows written twice, and the pipeline's process
spent ~2 × the CPU per completion of the same run without a monitor.  On a quiet machine the
monitor answers a batch within ~30 ms and the wait stays at ``answer_wait_s``.  Without a monitor, or without a
record (lost), the run is recorded at once.  Every loop is a ``tick()`` driven by ``run()``.

**An ``unknown`` answer is asked once more**, ``reask_unknown_s`` later
(``completion:resources_reask_unknown_s``, 0.5 s; 0: never).  The monitor learns of an activation
from the invoker's notices, which a loaded monitor may handle after the loader asked: in the
scale-out test with the 2 cores kept busy, 3 runs of 12 had one row ``unknown`` whose activation the
monitor knew moments later (one of them answered after the wait, its row written ``pending``: the
second answer updates that row); 0 of 8 since.  A run still ``unknown`` when asked again says so in its reason.
Nothing is asked again once the stage is closing: the re-ask never holds a row past ``close()``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import math
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from faasload.clock import Clock
from faasload.monitor_protocol import ActivationQuery
from loader.completion.resources import record_with
from loader.completion.tracker import Pending
from loader.monitor_client import MonitorAnswer, ResourcesQuery, ResourcesStatus
from loader.storage.activation_fields import completion_fields
from loader.storage.recorder import Recorder
from loader.storage.rows import NO_SAMPLES, RunStatus

log = logging.getLogger(__name__)

#: Threads that wait on the monitor's answers (batches asked at once, at most).
QUERY_THREADS = 4
#: How many recent batches' answer times set the wait for the next ones.
ANSWER_TIMES = 50
#: The wait: this many times the p90 of the recent answer times (within the configured bounds).
WAIT_OVER_P90 = 1.5


@dataclass(frozen=True)
class BatchSettings:
    batch_max: int = 200           # activations in one query, at most
    batch_wait_s: float = 0.01     # longest a completion waits for others to share its query
    answer_wait_s: float = 0.05    # longest a row waits for the monitor's answer (then: pending) ...
    answer_wait_max_s: float = 1.0  # ... unless the monitor answers slowly: then up to this
    reask_unknown_s: float = 0.5    # an ``unknown`` answer is asked once more this long after (0: never)


@dataclass(frozen=True, slots=True)
class _Completion:
    pending: Pending
    record: dict
    query: ResourcesQuery
    received_s: float
    fields: dict   # the record's run columns, mapped once for the query and the row
    unknown_s: float | None = None   # asked again: when the monitor first answered it unknown (monotonic)
    written: RunStatus | None = None   # its row's status, when written ``pending`` before the first answer


class _State(enum.Enum):
    ASKING = "asking"
    RECORDED = "recorded"   # written with resources pending; the answer will update the rows
    DONE = "done"


@dataclass(eq=False)
class _Batch:
    completions: list[_Completion]
    answer_due_s: float
    asked_s: float = 0.0
    state: _State = _State.ASKING
    statuses: list[RunStatus | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def resources_query(pending: Pending, record: dict, fields: dict | None = None) -> ResourcesQuery:
    """The monitor query for a completed activation: its id and the record's hints for attribution
    (``fields``: the record's :func:`~loader.storage.activation_fields.completion_fields`, if mapped already)."""
    fields = completion_fields(record) if fields is None else fields
    namespace, name = record.get("namespace"), record.get("name")
    return ResourcesQuery(ActivationQuery(
        pending.activation_id, namespace if isinstance(namespace, str) else None,
        name if isinstance(name, str) else None, fields.get("start_ms"), fields.get("end_ms"),
        fields.get("kind")), pending.source)


class QueryThreads:
    """Long-lived query threads on one queue, with the ``submit``/``shutdown`` of an executor.

    A ``ThreadPoolExecutor`` future per fetch (its Future, Condition and thread-count
    semaphore) took a quarter of the completion path's GIL time at 5,000 completions/s
    (when it also ran the record fetches).
    """

    def __init__(self, count: int, name: str):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True) for n in range(count)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            function, args = job
            function(*args)

    def submit(self, function: Callable, *args) -> None:
        self._queue.put((function, args))

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop the threads once the queued fetches are done."""
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


class ResourceBatches:
    def __init__(self, recorder: Recorder, monitor, settings: BatchSettings, *, clock: Clock):
        self.recorder = recorder
        self.monitor = monitor
        self.settings = settings
        self.clock = clock
        self.wake = threading.Event()
        self.batches = 0           # queries asked
        self.late_answers = 0      # runs recorded pending, then updated with the answer
        self._lock = threading.Lock()
        self._collecting: list[_Completion] = []
        self._asking: list[_Batch] = []
        self._bypass = False
        self._closing = False
        self._reasks: collections.deque[tuple[float, _Completion]] = collections.deque()  # (due, ...) in due order
        self._answer_times_s: collections.deque[float] = collections.deque(maxlen=ANSWER_TIMES)
        self.answer_wait_s = settings.answer_wait_s   # the current wait (it follows the monitor)
        self._queries = QueryThreads(QUERY_THREADS, "resources") if monitor is not None else None

    # ------------------------------------------------------------------ input (the fetch outcomes' thread)

    def submit(self, pending: Pending, record: dict | None, reason: str | None) -> None:
        """A finished activation: its record (None: lost with ``reason``).  Never blocks on the monitor."""
        if self.monitor is None or record is None:
            record_with(self.recorder, pending, record, reason, None)
            return
        try:
            fields = completion_fields(record)
            query = resources_query(pending, record, fields)
        except Exception as exc:  # a record the mapping chokes on: record it (lost, with the error)  # noqa: BLE001
            log.exception("activation %s: no monitor query from its record", pending.activation_id)
            record_with(self.recorder, pending, record, reason,
                        MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, f"{type(exc).__name__}: {exc}"))
            return
        completion = _Completion(pending, record, query, self.clock.monotonic_s(), fields)
        if self._bypass:  # the stage's thread died: asked alone, in this thread
            self._answered(_Batch([completion], math.inf))
            return
        with self._lock:
            self._collecting.append(completion)
            full = len(self._collecting) >= self.settings.batch_max
        if full or len(self._collecting) == 1:
            self.wake.set()

    @property
    def collecting(self) -> int:
        return len(self._collecting)

    @property
    def to_ask_again(self) -> int:
        """Activations answered ``unknown``, waiting to be asked once more."""
        return len(self._reasks)

    # ------------------------------------------------------------------ the loop (its own thread)

    def tick(self, *, everything: bool = False) -> float | None:
        """Ask for the batches that are due, record those whose answer is late; the next due time."""
        now_s = self.clock.monotonic_s()
        s = self.settings
        with self._lock:
            batches = []
            while self._collecting and (everything or len(self._collecting) >= s.batch_max
                                        or self._collecting[0].received_s + s.batch_wait_s <= now_s):
                batches.append(self._collecting[:s.batch_max])
                del self._collecting[:s.batch_max]
            next_s = self._collecting[0].received_s + s.batch_wait_s if self._collecting else None
            reasks = []
            while self._reasks and (everything or self._reasks[0][0] <= now_s):
                reasks.append(self._reasks.popleft()[1])
            if self._reasks:
                next_s = self._reasks[0][0] if next_s is None else min(next_s, self._reasks[0][0])
        batches += [reasks[n:n + s.batch_max] for n in range(0, len(reasks), s.batch_max)]
        for completions in batches:
            self._ask(completions, now_s)
        for batch in self._asking:
            if batch.state is _State.ASKING and batch.answer_due_s <= now_s:
                self._record_pending(batch)
        self._asking = [b for b in self._asking if b.state is _State.ASKING]
        dues = [b.answer_due_s for b in self._asking] + ([next_s] if next_s is not None else [])
        return min(dues) if dues else None

    def run(self, stop: threading.Event, *, idle_s: float = 0.1) -> None:
        """Tick until ``stop`` is set, waking on new completions."""
        while not stop.is_set():
            next_s = self.tick()
            now_s = self.clock.monotonic_s()
            self.wake.clear()
            self.clock.sleep_until(now_s + idle_s if next_s is None else min(next_s, now_s + idle_s), self.wake)

    def _ask(self, completions: list[_Completion], now_s: float) -> None:
        batch = _Batch(completions, now_s + self.answer_wait_s, now_s)
        self._asking.append(batch)
        self.batches += 1
        assert self._queries is not None, "a monitor asks"
        self._queries.submit(self._answered, batch)

    # ------------------------------------------------------------------ answers (query threads)

    def _answered(self, batch: _Batch) -> None:
        count = len(batch.completions)
        try:
            answers = self.monitor.samples_for_activations([c.query for c in batch.completions])
            if len(answers) != count:
                raise RuntimeError(f"{len(answers)} answers for {count} activations")
        except Exception as exc:  # the client should never raise; never lose the runs for it  # noqa: BLE001
            log.exception("monitor batch query for %d activations failed", count)
            answers = [MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, f"{type(exc).__name__}: {exc}")] * count
        if not math.isinf(batch.answer_due_s):
            self._follow(self.clock.monotonic_s() - batch.asked_s)
        try:
            with batch.lock:
                recorded, batch.state = batch.state is _State.RECORDED, _State.DONE
                statuses = batch.statuses or [c.written for c in batch.completions]
                for completion, status, answer in zip(batch.completions, statuses, answers):
                    if recorded and status is None:
                        continue   # its pending row could not be written: the run ended with the error
                    if answer.status is ResourcesStatus.UNKNOWN:
                        answer = self._unknown(completion, answer, status)
                        if answer is None:
                            continue   # asked again later
                    elif completion.unknown_s is not None:
                        self.recorder.stats.record_asked_again_answer(known=True)
                    if status is None:
                        record_with(self.recorder, completion.pending, completion.record, None, answer,
                                    completion.fields)
                    else:   # its row was written pending: the answer updates it
                        self.recorder.resources_arrived(completion.pending.invocation, status, answer)
                        self.late_answers += 1
        except Exception:  # the writer failed for good: the pipeline sees it on its next flush  # noqa: BLE001
            log.exception("recording a batch of %d completions failed", count)

    def _unknown(self, completion: _Completion, answer: MonitorAnswer, written: RunStatus | None) -> MonitorAnswer | None:
        """An ``unknown`` answer: None when the activation is to be asked again (queued, with the
        status of its row if ``written`` pending already), else the answer to record (its reason
        saying so after a second ``unknown``)."""
        again_s = self.settings.reask_unknown_s
        now_s = self.clock.monotonic_s()
        if completion.unknown_s is not None:   # asked again already (at once if the stage closed first)
            self.recorder.stats.record_asked_again_answer(known=False)
            later_s = round(now_s - completion.unknown_s, 2)
            return dataclasses.replace(answer, reason=f"{answer.reason}; still unknown when asked again "
                                                      f"{later_s:g} s later (completion:resources_reask_unknown_s)")
        if again_s <= 0:
            return answer
        with self._lock:
            if self._closing or self._bypass:
                return answer
            again = dataclasses.replace(completion, unknown_s=now_s, written=written)
            self._reasks.append((now_s + again_s, again))
        self.wake.set()
        return None

    def _follow(self, answer_time_s: float) -> None:
        """One more answer time: the wait of the next batches (1.5 × the recent p90, within bounds)."""
        times = self._answer_times_s
        times.append(answer_time_s)
        ordered = sorted(times)
        p90_s = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        s = self.settings
        self.answer_wait_s = min(s.answer_wait_max_s, max(s.answer_wait_s, WAIT_OVER_P90 * p90_s))

    def _record_pending(self, batch: _Batch) -> None:
        """The answer is late: the runs are recorded now, ``pending``; the answer will update them."""
        waited_ms = round((batch.answer_due_s - batch.asked_s) * 1000, 1)
        pending = MonitorAnswer(NO_SAMPLES, ResourcesStatus.PENDING,
                                f"the monitor had not answered {waited_ms:g} ms after it was asked "
                                "(completion:resources_wait_s, up to resources_wait_max_s when it answers "
                                "slowly); the loader stopped before the answer came")
        with batch.lock:
            if batch.state is not _State.ASKING:
                return
            batch.state = _State.RECORDED
            batch.statuses = [c.written if c.written is not None   # asked again: its row is written already
                              else record_with(self.recorder, c.pending, c.record, None, pending, c.fields)
                              for c in batch.completions]

    # ------------------------------------------------------------------ stopping

    def bypass(self) -> None:
        """The stage's thread died: ask what it held now, and each later completion alone, in its fetch thread."""
        with self._lock:
            self._bypass = True
        if self._queries is not None:
            self.tick(everything=True)

    def close(self) -> None:
        """Ask for what is collected and wait for every answer (each within the monitor's timeout).
        Call once no more completions come (the tracker closed) and the loop stopped."""
        if self._queries is None:
            return
        with self._lock:
            self._closing = True   # from now on an unknown answer is recorded, not asked again
        self.tick(everything=True)
        self._queries.shutdown(wait=True)
