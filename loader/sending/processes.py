"""Sender processes: the non-blocking invokes sent from other interpreters than the scheduler's.

In one interpreter, the scheduler thread, the invoker threads and the completion path take
turns on one GIL; at 5,000 invocations/s on two cores the scheduler itself fell seconds
behind (docs/performance.md).  Here the scheduler's process only hands each due invocation
to an idle invoker thread of one of ``processes`` sender processes, over that thread's own
pipe (a small pickled tuple); each such thread has its own keep-alive connection and sends
back what the platform answered and when the request went out.  A thread of the
scheduler's process records each answer (the same rows as the threaded pool) and hands the
accepted activations to the completion tracker.

Nothing is lost: an invocation handed to a sender that dies before answering is recorded
``connection_error`` with that reason (it may or may not have reached the platform); with
no sender left, invocations are recorded failed without being sent.  Once the run is
stopping, queued invocations come back ``cancelled``.  Times cross processes as
``time.monotonic()`` (one system-wide clock), so this pool needs the real clock.
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping

from faasload.clock import Clock, RealClock
from loader.completion.tracker import CompletionTracker
from loader.plan import PlannedInvocation
from loader.platform.client import ClientSettings, InvokeOutcome, InvokeStatus
from loader.platform.keys import UserKey
from loader.scheduler import Dispatch, offset_us
from loader.sending.common import CANCEL_REASON, no_key_reason, record_outcome, record_unsent
from loader.storage.recorder import Recorder

log = logging.getLogger(__name__)

#: How often the result thread looks at the stop flag (to cancel what the senders still queue).
WATCH_S = 0.05
START_TIMEOUT_S = 60.0
_CANCELLED = "cancelled"
_READY = "ready"


class _Lane:
    """The parent's end of one invoker thread of a sender process: a duplex pipe and what it holds."""

    def __init__(self, process, process_number: int, number: int, conn):
        self.process = process
        self.process_number = process_number
        self.number = number
        self.conn = conn
        self.in_flight: dict[int, tuple[PlannedInvocation, UserKey]] = {}
        self.alive = True
        self.idle = True

    @property
    def name(self) -> str:
        return f"sender process {self.process_number} (thread {self.number})"


class ProcessInvokerPool:
    """Same role and interface as :class:`loader.sending.threads.InvokerPool`, with sender processes.

    Each invoker thread of each sender process has its own pipe to this process, so a due
    invocation goes straight to an idle thread (or, when none is idle, to the least busy).
    """

    def __init__(self, processes: int, threads: int, client: ClientSettings, keys: Mapping[str, UserKey],
                 recorder: Recorder, tracker: CompletionTracker, *, clock: Clock, start_s: Callable[[], float],
                 stopping: threading.Event):
        if processes < 1 or threads < 1:
            raise ValueError("a process pool needs at least one process and one thread per process")
        if not isinstance(clock, RealClock):
            raise ValueError("sender processes need the real clock (times cross processes as time.monotonic())")
        self.processes = processes
        self.threads = threads
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
        self._idle: collections.deque[_Lane] = collections.deque()
        self._idle_lock = threading.Lock()
        self._tickets = itertools.count()
        self._results_thread: threading.Thread | None = None
        self.process_ids: list[int] = []

    # ------------------------------------------------------------------ the scheduler's side

    def start(self) -> None:
        for number in range(self.processes):
            ours, theirs = zip(*(self._context.Pipe(duplex=True) for _ in range(self.threads)))
            process = self._context.Process(
                target=_sender_main, name=f"faasload-sender-{number}", daemon=True,
                args=(number, self.client, self.keys, list(theirs), self._cancel,
                      logging.getLogger().getEffectiveLevel()))
            process.start()
            assert process.pid is not None, "a started process has a pid"
            self.process_ids.append(process.pid)
            for thread_number, (conn, child_end) in enumerate(zip(ours, theirs)):
                child_end.close()
                self._lanes.append(_Lane(process, number, thread_number, conn))
        for lane in self._lanes:  # a spawned interpreter needs ~0.3 s of imports: wait, or the first
            self._await_ready(lane)  # invocations of the run would queue behind them
        self._idle.extend(self._lanes)
        self._results_thread = threading.Thread(target=self._collect, name="sender-results", daemon=True)
        self._results_thread.start()

    def _await_ready(self, lane: _Lane) -> None:
        deadline_s = time.monotonic() + START_TIMEOUT_S
        while not lane.conn.poll(0.1):
            if not lane.process.is_alive() or time.monotonic() > deadline_s:
                self._cancel.set()
                for other in self._lanes:
                    other.process.kill()
                raise RuntimeError(f"{lane.name} did not start (exit code {lane.process.exitcode}); "
                                   "its error, if any, is in the log above")
        if lane.conn.recv() != _READY:
            raise RuntimeError(f"{lane.name} sent something else than its ready message")

    def _choose(self) -> _Lane | None:
        with self._idle_lock:
            while self._idle:
                lane = self._idle.popleft()
                lane.idle = False
                if lane.alive:
                    return lane
        live = [lane for lane in self._lanes if lane.alive]
        return min(live, key=lambda lane: len(lane.in_flight)) if live else None

    def submit(self, item: Dispatch) -> None:
        """The scheduler's dispatch: one pipe write, never waits on a response."""
        self.recorder.dispatched()
        invocation = item.invocation
        if self.stopping.is_set():
            self.recorder.cancelled(invocation, CANCEL_REASON, dispatched=True)
            return
        user = self.keys.get(invocation.user)
        if user is None:
            self._fail(invocation, no_key_reason(invocation), InvokeStatus.HTTP_ERROR)
            return
        lane = self._choose()
        if lane is None:
            self._fail(invocation, "no sender process is running (not sent)")
            return
        ticket = next(self._tickets)
        lane.in_flight[ticket] = (invocation, user)
        try:
            lane.conn.send((ticket, invocation.user, invocation.action, invocation.parameters))
        except (OSError, ValueError):  # the sender died: the results thread records what it held
            if lane.in_flight.pop(ticket, None) is not None:
                self._fail(invocation, f"{lane.name} is gone (not sent)")

    def stop(self) -> None:
        """Let the senders finish what they hold, collect every answer, end the processes."""
        if self.stopping.is_set():
            self._cancel.set()
        for lane in self._lanes:
            try:
                lane.conn.send(None)
            except (OSError, ValueError):
                pass
        if self._results_thread is not None:
            self._results_thread.join(60.0)
        for process in {lane.process for lane in self._lanes}:
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
        """The results thread: record each answer; notice dead senders; pass the stop flag on."""
        open_conns = {lane.conn: lane for lane in self._lanes}
        while open_conns:
            if self.stopping.is_set() and not self._cancel.is_set():
                self._cancel.set()
            for conn in multiprocessing.connection.wait(list(open_conns), WATCH_S):
                lane = open_conns[conn]
                try:
                    answer = lane.conn.recv()  # conn itself (wait() is typed for sockets and fds too)
                except (EOFError, OSError):
                    del open_conns[conn]
                    self._lane_ended(lane)
                    continue
                self._record(lane, answer)

    def _record(self, lane: _Lane, answer: tuple) -> None:
        ticket, sent_s, status, attempts, activation_id, http_status, reason = answer
        held = lane.in_flight.pop(ticket, None)
        if not lane.in_flight:
            with self._idle_lock:
                if not lane.idle:
                    lane.idle = True
                    self._idle.append(lane)
        if held is None:
            log.error("%s answered an unknown ticket %d", lane.name, ticket)
            return
        invocation, user = held
        try:
            if status == _CANCELLED:
                self.recorder.cancelled(invocation, CANCEL_REASON, dispatched=True)
                return
            outcome = InvokeOutcome(InvokeStatus(status), attempts, activation_id, http_status, reason)
            record_outcome(self.recorder, self.tracker, invocation, user, sent_s, self.start_s(), outcome)
        except Exception:  # the store failed for good: the pipeline's supervisor reports it  # noqa: BLE001
            log.exception("recording the answer for %s #%d failed", invocation.trace_name, invocation.seq)

    def _lane_ended(self, lane: _Lane) -> None:
        lane.alive = False
        lane.process.join(1.0)
        code = lane.process.exitcode
        if lane.in_flight or code not in (0, None):
            log.error("%s ended (exit code %s) with %d invocations unanswered", lane.name, code, len(lane.in_flight))
        self._lose_in_flight(lane, f"{{lane}} exited (code {code}) before reporting this invocation; "
                                   "it may or may not have reached the platform")

    def _lose_in_flight(self, lane: _Lane, reason: str) -> None:
        while lane.in_flight:
            try:
                _, (invocation, _user) = lane.in_flight.popitem()
            except KeyError:
                return
            self._fail(invocation, reason.format(lane=lane.name))

    def _fail(self, invocation: PlannedInvocation, reason: str,
              status: InvokeStatus = InvokeStatus.CONNECTION_ERROR) -> None:
        record_unsent(self.recorder, invocation, offset_us(self.clock, self.start_s()), reason, status)


# ---------------------------------------------------------------------- the sender process

def _sender_main(number: int, settings: ClientSettings, keys: dict[str, UserKey], conns: list, cancel,
                 log_level: int) -> None:
    """A sender process: one invoker thread per pipe, each with its own keep-alive connection."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stops come from the parent, through the pipes
    logging.basicConfig(level=log_level, format=f"%(asctime)s faasload-sender-{number}[{os.getpid()}] "
                                                "%(levelname)s %(name)s: %(message)s")
    client = settings.client()

    def invoker(conn) -> None:
        try:
            conn.send(_READY)
            while (message := conn.recv()) is not None:
                ticket, user_name, action, parameters = message
                if cancel.is_set():
                    conn.send((ticket, None, _CANCELLED, 0, None, None, None))
                    continue
                sent_s = time.monotonic()
                try:
                    outcome = client.invoke(keys[user_name], action, dict(parameters), give_up=cancel.is_set)
                except Exception as exc:  # a bug must not lose the invocation  # noqa: BLE001
                    logging.getLogger(__name__).exception("invoking %s failed", action)
                    outcome = InvokeOutcome(InvokeStatus.CONNECTION_ERROR, 0,
                                            reason=f"loader error before sending: {exc}")
                conn.send((ticket, sent_s, outcome.status.value, outcome.attempts, outcome.activation_id,
                           outcome.http_status, outcome.reason))
        except EOFError:  # the parent is gone
            pass
        finally:
            conn.close()

    workers = [threading.Thread(target=invoker, args=(conn,), name=f"invoker-{number}-{n}", daemon=True)
               for n, conn in enumerate(conns)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.close()
