"""The inside of a sender process: non-blocking invokes on an event loop, as many in flight as due.

A thread per request in flight turns the open loop into a closed one when the platform is
slow to accept (a cold-start storm, an overloaded controller): once every thread waits on
an answer, later invocations wait for a thread and the loader measures itself, not the
trace (coordinated omission).  Here one event loop per sender process (uvloop's:
:mod:`loader.child_loop`) writes each request on a keep-alive connection of its own pool at
its planned time, opening another connection when every open one is busy, up to
``max_in_flight`` requests in flight; what the cap holds back is sent as soon as an answer
frees a connection, and its lateness says so.  Answers are parsed incrementally
(:mod:`loader.platform.http_parse`) and sent back to the scheduler's process in batches.

Retries (``invoke_retries`` > 0) are rescheduled on the loop, never slept, and only for
what provably did not run: a connection that could not be opened (nothing was sent), 429,
and 503 with ``Retry-After``.  A 5xx after the body went out is recorded as it is: the
platform may have started the function, so sending it again could run it twice.  The
decision and the wait are the :class:`~loader.sending.retries.RetryPolicy` the invoker
threads of the scheduler's process use too.

The scheduler hands invocations over up to :data:`~loader.sending.processes.LEAD_S` before
their planned time, and this loop sends each at that time, woken by a
:class:`~loader.sending.deadline_timer.DeadlineTimer` (µs, where the loop's own timers are
~1 ms late): the send times do not depend on the scheduler's process (its GIL, its garbage
collections, the completion path's threads), only on this loop, which does nothing else.

Messages from the parent: a list of ``(ticket, user, action, parameters, planned_s)``
(``planned_s`` on ``time.monotonic()``'s clock, shared by the processes), or None to end once
everything held is sent and answered.  Answers: a list of
``(ticket, sent_s, status, attempts, activation_id, http_status, reason)``.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import os
import resource
import signal
import time
from dataclasses import asdict, dataclass
from typing import Any

from faasload import gc_tuning
from faasload.clock import set_fine_timer_slack
from loader import child_loop
from loader.child_pipes import READY, BatchedAnswers
from loader.platform.client import ClientSettings, InvokeOutcome, InvokeStatus, invoke_outcome
from loader.platform.connection_pool import ConnectionPool
from loader.platform.http import Response
from loader.platform.http_async import AnswerConnection
from loader.platform.keys import UserKey
from loader.sending.deadline_timer import DeadlineTimer
from loader.sending.retries import RetryPolicy

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
#: How often requests in flight are checked against their timeout.
SWEEP_S = 0.05


@dataclass(slots=True)
class _Request:
    ticket: int
    data: bytes
    attempts: int = 0
    sent_s: float | None = None
    deadline_s: float = 0.0
    connection: AnswerConnection | None = None
    answered: bool = False


@dataclass
class LoopStats:
    sent: int = 0
    answered: int = 0
    connections_opened: int = 0
    peak_in_flight: int = 0
    peak_waiting: int = 0
    retries: int = 0
    held: int = 0   # requests that waited for the in-flight cap
    peak_timed: int = 0   # requests received ahead of their planned time, waiting for it


class LoopInvoker(ConnectionPool[_Request, LoopStats]):
    """Sends requests on the running event loop; ``answer(ticket, sent_s, outcome)`` for each one."""

    def __init__(self, settings: ClientSettings, keys: dict[str, UserKey], answer, *, max_in_flight: int):
        client = settings.client()   # builds the request bytes; its sockets are never used
        transport = client._transport
        super().__init__(transport.host, transport.port, transport._ssl_context, "POST", timeout_s=settings.timeout_s,
                         max_in_flight=max_in_flight, stats=LoopStats())
        self.settings = settings
        self.keys = keys
        self.answer = answer
        self.client = client
        self.retry_policy = RetryPolicy.of(settings.invoke_retries, settings.retry_backoff_s)
        self.stopping = False   # no more retries: the run is stopping
        self.timed: list[tuple[float, int, _Request]] = []   # (planned monotonic s, ticket, request): a heap
        self._timer: DeadlineTimer | None = None
        self._fallback: asyncio.TimerHandle | None = None    # without a timerfd: the loop's (coarser) timer
        try:
            self._timer = DeadlineTimer(self.loop, self._due)
        except (OSError, AttributeError) as exc:
            log.warning("no timerfd (%s): requests sent ahead of their time wait on the loop's timer, "
                        "~1 ms late", exc)

    # ------------------------------------------------------------------ requests in

    def submit(self, ticket: int, user_name: str, action: str, parameters: Any, planned_s: float | None = None) -> None:
        """A request to send at monotonic ``planned_s`` (None or past: now).  Its bytes are built now,
        ahead of its time."""
        data = self.client.invoke_request(self.keys[user_name], action, dict(parameters))
        request = _Request(ticket, data)
        if planned_s is not None and planned_s > time.monotonic():
            heapq.heappush(self.timed, (planned_s, ticket, request))
            self.stats.peak_timed = max(self.stats.peak_timed, len(self.timed))
            if self.timed[0][2] is request:
                self._arm(planned_s)
            return
        self._admit(request)

    def _arm(self, at_s: float) -> None:
        if self._timer is not None:
            self._timer.arm(at_s)
            return
        if self._fallback is not None:
            self._fallback.cancel()
        # a delay, not call_at: the loop's own clock (uvloop: libuv's, in whole ms) is not time.monotonic()'s
        self._fallback = self.loop.call_later(max(0.0, at_s - time.monotonic()), self._due)

    def _due(self) -> None:
        """The timer fired: send what has come to its planned time, arm for the next."""
        now_s = time.monotonic()
        timed = self.timed
        while timed and timed[0][0] <= now_s:
            self._admit(heapq.heappop(timed)[2])
        if timed:
            self._arm(timed[0][0])

    def cancel_waiting(self) -> None:
        """The run is stopping: what is not sent yet (held by the cap, or before its time) is cancelled."""
        while self.waiting:
            request = self.waiting.popleft()
            self.answer(request.ticket, None, None)
        timed, self.timed = sorted(self.timed), []
        for _, _, request in timed:
            self.answer(request.ticket, None, None)

    def _send(self, request: _Request) -> None:
        request.attempts += 1
        if request.sent_s is None:  # the first attempt: what lateness measures
            request.sent_s = time.monotonic()
        super()._send(request)

    def _written(self, request: _Request) -> None:
        self.stats.sent += 1

    # ------------------------------------------------------------------ answers in

    def _answered_request(self, request: _Request, response: Response) -> None:
        outcome = invoke_outcome(response, request.attempts)
        if not self._retry(request, outcome):
            self._finish(request, outcome)

    def _failed_request(self, request: _Request, reason: str, silent_reuse: bool) -> None:
        # a POST is never sent again after it went out: the platform may have run it
        self._finish(request, InvokeOutcome(InvokeStatus.CONNECTION_ERROR, request.attempts, reason=reason))

    def _connect_failed(self, request: _Request, reason: str) -> None:
        # Nothing was sent: always safe to retry.
        outcome = InvokeOutcome(InvokeStatus.CONNECTION_ERROR, request.attempts, reason=reason, not_processed=True)
        if not self._retry(request, outcome):
            self._finish(request, outcome)

    def _retry(self, request: _Request, outcome: InvokeOutcome) -> bool:
        """Reschedule ``request`` when it provably did not run and retries are left (the shared
        :class:`~loader.sending.retries.RetryPolicy`)."""
        delay_s = None if self.stopping else self.retry_policy.delay_s(outcome, request.attempts)
        if delay_s is None:
            return False
        self.stats.retries += 1
        self.loop.call_later(delay_s, self._send, request)
        return True

    def _finish(self, request: _Request, outcome: InvokeOutcome) -> None:
        self.stats.answered += 1
        self.answer(request.ticket, request.sent_s, outcome)
        self._release()

    @property
    def busy(self) -> bool:
        return super().busy or bool(self.timed)

    def close(self) -> None:
        super().close()
        if self._timer is not None:
            self._timer.close()


# ---------------------------------------------------------------------- the process

def raise_file_limit(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted`` (one descriptor per connection)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted)) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def sender_main(number: int, settings: ClientSettings, keys: dict[str, UserKey], conn, cancel, log_level: int,
                max_in_flight: int) -> None:
    """A sender process: one event loop, its connections, one pipe to the scheduler's process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stops come from the parent, through the pipe
    logging.basicConfig(level=log_level, format=f"%(asctime)s faasload-sender-{number}[{os.getpid()}] "
                                                "%(levelname)s %(name)s: %(message)s")
    limit = raise_file_limit(max_in_flight + 64)
    if limit < max_in_flight + 64:
        log.warning("open-file limit %d: at most ~%d requests in flight in this sender", limit, limit - 64)
        max_in_flight = max(1, limit - 64)
    gc_tuning.tune()
    set_fine_timer_slack()   # the timerfd's expiries are due to within µs, not the default 50 µs slack
    child_loop.run(_serve(settings, keys, conn, cancel, max_in_flight))


async def _serve(settings: ClientSettings, keys: dict[str, UserKey], conn, cancel, max_in_flight: int) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    answers = BatchedAnswers(conn, loop, parent_gone=done.set)

    def answer(ticket: int, sent_s: float | None, outcome: InvokeOutcome | None) -> None:
        if outcome is None:
            answers.add((ticket, None, CANCELLED, 0, None, None, None))
        else:
            answers.add((ticket, sent_s, outcome.status.value, outcome.attempts, outcome.activation_id,
                         outcome.http_status, outcome.reason))

    invoker = LoopInvoker(settings, keys, answer, max_in_flight=max_in_flight)
    ending = False

    queued: collections.deque[list] = collections.deque()

    def readable() -> None:
        nonlocal ending
        try:
            while conn.poll():
                message = conn.recv()
                if message is None:
                    ending = True
                    loop.remove_reader(conn.fileno())
                    break
                # Sent once the answers that arrived in this loop iteration are handled: the
                # connections they free are then reused instead of new ones opened.
                queued.append(message)
                loop.call_soon(submit_batch)
        except (EOFError, OSError):  # the parent is gone
            ending = True
            loop.remove_reader(conn.fileno())
        if ending and not invoker.busy and not queued:
            done.set()

    def submit_batch() -> None:
        message = queued.popleft()
        cancelled = cancel.is_set()
        for ticket, user_name, action, parameters, planned_s in message:
            if cancelled:
                answer(ticket, None, None)
            else:
                invoker.submit(ticket, user_name, action, parameters, planned_s)

    async def sweeper() -> None:
        while not done.is_set():
            await asyncio.sleep(SWEEP_S)
            if cancel.is_set():
                invoker.stopping = True
                invoker.cancel_waiting()
            invoker.sweep()
            if ending and not invoker.busy and not queued:
                done.set()

    conn.send(READY)
    child_loop.watch_pipe(loop, conn.fileno(), readable)
    sweep_task = loop.create_task(sweeper())
    await done.wait()
    answers.flush()
    sweep_task.cancel()
    invoker.close()
    try:
        conn.send(("stats", asdict(invoker.stats)))
    except (OSError, ValueError):
        pass
    conn.close()
