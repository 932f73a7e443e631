"""Sender processes: the non-blocking invokes sent from other interpreters than the scheduler's.

In one interpreter, the scheduler thread, the senders and the completion path take turns on
one GIL; at 5,000 invocations/s on two cores the scheduler itself fell seconds behind
(docs/performance.md).  Here the scheduler's process only hands each due invocation to one
of ``processes`` sender processes (the one with the fewest requests in flight): the
scheduler's :meth:`~ProcessInvokerPool.submit` appends it to that process's batch and
:meth:`~ProcessInvokerPool.flush`, at the end of each scheduler tick, writes each batch to
its pipe in one message.  The scheduler hands each invocation over up to :data:`LEAD_S`
before its planned time, and its sender sends it at that time: a pause of the scheduler's
process shorter than that costs no lateness.  Each sender process runs an event loop
(:mod:`loader.sending.event_loop`) that sends every request at its time on a connection of its
own, so requests in flight are bounded by ``max_in_flight``, not by threads, and a slow
platform delays no later send.  A thread of the scheduler's process records the answers,
which come back in batches, (the same rows as the threaded pool) and hands the accepted
activations to the completion tracker.

Nothing is lost: an invocation handed to a sender that dies before answering is recorded
``connection_error`` with that reason (it may or may not have reached the platform); with
no sender left, invocations are recorded failed without being sent.  Once the run is
stopping, what a sender still holds back comes back ``cancelled``.  Times cross processes
as ``time.monotonic()`` (one system-wide clock), so this pool needs the real clock.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import pickle
import selectors
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from faasload.clock import Clock, RealClock
from loader.child_pipes import ChildNotReady, Frames, await_ready
from loader.completion.tracker import CompletionTracker
from loader.plan import PlannedInvocation
from loader.platform.client import ClientSettings, InvokeOutcome, InvokeStatus
from loader.platform.keys import UserKey
from loader.scheduler import Dispatch, offset_us
from loader.sending.common import CANCEL_REASON, no_key_reason, record_unsent
from loader.sending.event_loop import CANCELLED, sender_main
from loader.storage.recorder import Recorder

log = logging.getLogger(__name__)

_STATUSES = {status.value: status for status in InvokeStatus}
#: How long before its planned time the scheduler hands an invocation over; its sender sends it
#: at that time (:mod:`loader.sending.event_loop`).  A pause of the scheduler's process shorter
#: than this (the GIL taken by the completion path for up to a switch interval, a garbage
#: collection) makes no invocation late; a stop cancels what was handed over and is not sent yet.
LEAD_S = 0.05
#: How often the result thread looks at the stop flag (to cancel what the senders still hold back).
WATCH_S = 0.05
#: How long the results thread lets answers gather after recording some: answers are recorded
#: in batches (their lateness was measured by the sender), and the scheduler thread is not
#: interrupted for each one.
GATHER_S = 0.002


class _Lane:
    """The parent's end of one sender process: its pipe, what it holds, the batch to write."""

    def __init__(self, process, number: int, conn):
        self.process = process
        self.number = number
        self.conn = conn
        self.in_flight: dict[int, tuple[PlannedInvocation, UserKey]] = {}
        self.batch: list[tuple] = []
        self.alive = True
        self.stats: dict = {}

    @property
    def name(self) -> str:
        return f"sender process {self.number}"


@dataclass
class PoolStats:
    """Pipe messages of the scheduler's process: dispatch batches written, answer batches read."""

    dispatch_messages: int = 0
    answer_messages: int = 0


class ProcessInvokerPool:
    """The :class:`~loader.sending.common.InvokerPool` of sender processes, each an event loop."""

    def __init__(self, processes: int, client: ClientSettings, keys: Mapping[str, UserKey],
                 recorder: Recorder, tracker: CompletionTracker, *, clock: Clock, start_s: Callable[[], float],
                 stopping: threading.Event, max_in_flight: int = 10_000, sender: Callable[..., None] = sender_main,
                 lead_s: float = LEAD_S):
        if processes < 1 or max_in_flight < 1:
            raise ValueError("a process pool needs at least one process and one request in flight")
        if not isinstance(clock, RealClock):
            raise ValueError("sender processes need the real clock (times cross processes as time.monotonic())")
        self.processes = processes
        self.sender = sender   # each process's body: sender_main's arguments (a bench swaps in a stand-in)
        self.max_in_flight = max_in_flight
        self.client = client
        self.keys = dict(keys)
        self.recorder = recorder
        self.tracker = tracker
        self.clock = clock
        self.start_s = start_s
        self.stopping = stopping
        self._context = multiprocessing.get_context("spawn")
        self._cancel = self._context.Event()
        self._lanes: list[_Lane] = []
        self._lock = threading.Lock()   # the lanes' in_flight, between the scheduler and the results thread
        self._tickets = itertools.count()
        self._results_thread: threading.Thread | None = None
        self.process_ids: list[int] = []
        self.stats = PoolStats()
        self.lead_s = lead_s   # 0: each invocation sent when the senders get it (a bench's sped-up replay)

    # ------------------------------------------------------------------ the scheduler's side

    def start(self) -> None:
        share = -(-self.max_in_flight // self.processes)
        for number in range(self.processes):
            ours, theirs = self._context.Pipe(duplex=True)
            process = self._context.Process(
                target=self.sender, name=f"faasload-sender-{number}", daemon=True,
                args=(number, self.client, self.keys, theirs, self._cancel,
                      logging.getLogger().getEffectiveLevel(), share))
            process.start()
            theirs.close()
            assert process.pid is not None, "a started process has a pid"
            self.process_ids.append(process.pid)
            self._lanes.append(_Lane(process, number, ours))
        for lane in self._lanes:  # a spawned interpreter needs ~0.3 s of imports: wait, or the first
            self._await_ready(lane)  # invocations of the run would queue behind them
        self._results_thread = threading.Thread(target=self._collect, name="sender-results", daemon=True)
        self._results_thread.start()

    def _await_ready(self, lane: _Lane) -> None:
        try:
            await_ready(lane.process, lane.conn, lane.name)
        except ChildNotReady:
            self._cancel.set()
            for other in self._lanes:
                other.process.kill()
            raise

    def submit(self, item: Dispatch) -> None:
        """The scheduler's dispatch: onto the batch of the least busy sender; never waits on a response."""
        self.recorder.dispatched()
        invocation = item.invocation
        if self.stopping.is_set():
            self.recorder.cancelled(invocation, CANCEL_REASON, dispatched=True)
            return
        user = self.keys.get(invocation.user)
        if user is None:
            self._fail(invocation, no_key_reason(invocation), InvokeStatus.HTTP_ERROR)
            return
        with self._lock:
            live = [lane for lane in self._lanes if lane.alive]
            if not live:
                lane = None
            else:
                lane = min(live, key=lambda candidate: len(candidate.in_flight))
                ticket = next(self._tickets)
                lane.in_flight[ticket] = (invocation, user)
                lane.batch.append((ticket, invocation.user, invocation.action, invocation.parameters,
                                   self.start_s() + invocation.planned_offset_us / 1_000_000 if self.lead_s else None))
        if lane is None:
            self._fail(invocation, "no sender process is running (not sent)")

    def flush(self) -> None:
        """Write each sender's batch in one pipe message (the scheduler calls it after each tick)."""
        for lane in self._lanes:
            if not lane.batch:
                continue
            batch, lane.batch = lane.batch, []
            try:  # pickle.dumps: several times cheaper than Connection.send's ForkingPickler for plain tuples
                lane.conn.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
                self.stats.dispatch_messages += 1
            except (OSError, ValueError):  # the sender died: record what this batch held
                for ticket, *_ in batch:
                    with self._lock:
                        held = lane.in_flight.pop(ticket, None)
                    if held is not None:
                        self._fail(held[0], f"{lane.name} is gone (not sent)")

    @property
    def in_flight(self) -> int:
        return sum(len(lane.in_flight) for lane in self._lanes)

    @property
    def sender_stats(self) -> list[dict]:
        """What each sender reported when it ended (peak in flight, connections opened, retries...)."""
        return [lane.stats for lane in self._lanes]

    def stop(self) -> None:
        """Let the senders finish what they hold, collect every answer, end the processes."""
        self.flush()
        if self.stopping.is_set():
            self._cancel.set()
        for lane in self._lanes:
            try:
                lane.conn.send(None)
            except (OSError, ValueError):
                pass
        if self._results_thread is not None:
            self._results_thread.join(60.0 + self.client.timeout_s)
        for process in (lane.process for lane in self._lanes):
            process.join(5.0)
            if process.is_alive():
                log.error("%s did not stop; terminating it", process.name)
                process.terminate()
                process.join(5.0)
        for lane in self._lanes:
            self._lose_in_flight(lane, "the loader stopped before {lane} answered")
            lane.conn.close()

    # ------------------------------------------------------------------ the answers

    def _collect(self) -> None:
        """The results thread: record each answer; notice dead senders; pass the stop flag on.

        One selector for the whole run, and each ready pipe read at once with what it holds (one
        ``os.read`` often brings several answer messages): ``Connection.recv`` per message behind
        ``multiprocessing.connection.wait`` (a new selector per call) cost more than recording."""
        with selectors.DefaultSelector() as selector:
            for lane in self._lanes:
                selector.register(lane.conn.fileno(), selectors.EVENT_READ, (lane, Frames(lane.conn.fileno())))
            while selector.get_map():
                if self.stopping.is_set() and not self._cancel.is_set():
                    self._cancel.set()
                ready = selector.select(WATCH_S)
                for key, _ in ready:
                    lane, frames = key.data
                    try:
                        messages = frames.read()
                    except Exception:  # noqa: BLE001 (a broken pipe or message: that sender is lost, not the run)
                        log.exception("reading the answers of %s failed", lane.name)
                        messages = None
                    if messages is None:
                        selector.unregister(key.fd)
                        self._lane_ended(lane)
                        continue
                    for message in messages:
                        if isinstance(message, tuple) and message and message[0] == "stats":
                            lane.stats = message[1]
                            continue
                        self.stats.answer_messages += 1
                        self._record(lane, message)
                if ready:  # let the next answers gather: fewer wake-ups taking the GIL from the scheduler
                    time.sleep(GATHER_S)

    def _record(self, lane: _Lane, answers: list[tuple]) -> None:
        """One message of answers: its rows written at once, then its accepted activations tracked."""
        with self._lock:
            held = [lane.in_flight.pop(answer[0], None) for answer in answers]
        start_s = self.start_s()
        sent: list[tuple[PlannedInvocation, int, InvokeOutcome]] = []
        accepted: list[tuple[PlannedInvocation, UserKey, str, float]] = []
        cancelled: list[PlannedInvocation] = []
        for (ticket, sent_s, status, attempts, activation_id, http_status, reason), entry in zip(answers, held):
            if entry is None:
                log.error("%s answered an unknown ticket %d", lane.name, ticket)
                continue
            invocation, user = entry
            if status == CANCELLED:
                cancelled.append(invocation)
                continue
            outcome = InvokeOutcome(_STATUSES[status], attempts, activation_id, http_status, reason)
            sent.append((invocation, round((sent_s - start_s) * 1_000_000), outcome))
            if outcome.status is InvokeStatus.ACCEPTED and activation_id is not None:
                accepted.append((invocation, user, activation_id, sent_s))
        try:
            self.recorder.sent_batch(sent)
        except Exception:  # the store failed for good: the pipeline's supervisor reports it
            log.exception("recording %d answers of %s failed", len(sent), lane.name)
            accepted = []
        for invocation, user, activation_id, sent_s in accepted:
            try:
                self.tracker.register(invocation, self.recorder.key(invocation), user, activation_id, sent_s)
            except Exception:  # noqa: BLE001 (one activation's bug must not cost the others theirs)
                log.exception("tracking %s #%d failed", invocation.trace_name, invocation.seq)
        for invocation in cancelled:
            try:
                self.recorder.cancelled(invocation, CANCEL_REASON, dispatched=True)
            except Exception:  # noqa: BLE001 (as above)
                log.exception("recording the cancellation of %s #%d failed", invocation.trace_name, invocation.seq)

    def _lane_ended(self, lane: _Lane) -> None:
        lane.alive = False
        lane.process.join(1.0)
        code = lane.process.exitcode
        if lane.in_flight or code not in (0, None):
            log.error("%s ended (exit code %s) with %d invocations unanswered", lane.name, code, len(lane.in_flight))
        self._lose_in_flight(lane, f"{{lane}} exited (code {code}) before reporting this invocation; "
                                   "it may or may not have reached the platform")

    def _lose_in_flight(self, lane: _Lane, reason: str) -> None:
        while True:
            with self._lock:
                if not lane.in_flight:
                    return
                _, (invocation, _user) = lane.in_flight.popitem()
            self._fail(invocation, reason.format(lane=lane.name))

    def _fail(self, invocation: PlannedInvocation, reason: str,
              status: InvokeStatus = InvokeStatus.CONNECTION_ERROR) -> None:
        record_unsent(self.recorder, invocation, offset_us(self.clock, self.start_s()), reason, status)
