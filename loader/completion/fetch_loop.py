"""Activation-record fetches on an asyncio loop: every due fetch sent at once, on keep-alive connections.

Eight blocking fetch threads capped the completion path at ~2,700 records/s against nginx
(bench/completion_pipeline.py, monitor on, 5,000 events/s: consumed → record fetched p50
2.2 s) while the process used 70% of one core: each thread waited for its answer, then for
the GIL, so eight fetches in flight at ~3 ms each was the ceiling.  Here each fetch is
written at once on an idle connection of the pool, or on a new one, up to ``max_in_flight``
fetches in flight (``completion:fetches_in_flight``); beyond it they wait for an answer to
free a connection.  Answers are parsed as they arrive (:mod:`loader.platform.http_async`,
the sender processes' connection) and handed to ``answer(ticket, outcome)``.  Alone against
nginx, one loop fetches 10,000 records/s at ~36 µs of CPU each, p99 6 ms; it runs in a
process of its own (:mod:`loader.completion.fetch_process`, which says why).

A kept-alive connection closed by the server just as it was reused (nothing came back) is
retried once on a new connection (a GET is idempotent); any other failure, and a fetch
without an answer within the client's timeout, is an ``error`` outcome: the tracker
schedules the fetch again with its backoff.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from loader.platform.client import FetchOutcome, OpenWhiskClient, fetch_outcome, network_outcome
from loader.platform.http import Response
from loader.platform.http_async import AnswerConnection
from loader.platform.keys import UserKey

log = logging.getLogger(__name__)

#: How often fetches in flight are checked against their timeout.
SWEEP_S = 0.05

#: ``answer(ticket, outcome)``: the outcome of the fetch submitted with ``ticket``.
Answer = Callable[[int, FetchOutcome], None]


@dataclass(slots=True, eq=False)
class _Fetch:
    ticket: int
    data: bytes
    connection: AnswerConnection | None = None
    answered: bool = False
    deadline_s: float = 0.0
    resent: bool = False


@dataclass
class FetchStats:
    fetched: int = 0
    connections_opened: int = 0
    peak_in_flight: int = 0
    held: int = 0        # fetches that waited for the in-flight cap
    resent: int = 0      # sent again after a reused connection closed without an answer


class RecordFetches:
    """Record fetches on the running asyncio loop; ``answer(ticket, outcome)`` for each, on that loop."""

    def __init__(self, client: OpenWhiskClient, max_in_flight: int, answer: Answer):
        self.client = client
        transport = client.transport
        self.host, self.port, self.ssl = transport.host, transport.port, transport.ssl_context
        self.timeout_s = client.timeout_s
        self.max_in_flight = max_in_flight
        self.answer = answer
        self.stats = FetchStats()
        self._idle: list[AnswerConnection] = []
        self._in_flight = 0
        self._waiting: collections.deque[_Fetch] = collections.deque()
        self._timeouts: collections.deque[_Fetch] = collections.deque()   # in send order: one timeout for all
        self._loop = asyncio.get_running_loop()
        self._loop.call_later(SWEEP_S, self._sweep)

    def submit(self, ticket: int, user: UserKey, activation_id: str) -> None:
        """Fetch the record of ``activation_id`` now, or once the cap on fetches in flight allows."""
        fetch = _Fetch(ticket, self.client.activation_request(user, activation_id))
        if self._in_flight >= self.max_in_flight:
            self.stats.held += 1
            self._waiting.append(fetch)
        else:
            self._start(fetch)

    @property
    def busy(self) -> bool:
        return self._in_flight > 0 or bool(self._waiting)

    def close(self) -> None:
        for connection in self._idle:
            connection.abort()
        self._idle.clear()

    def _start(self, fetch: _Fetch) -> None:
        self._in_flight += 1
        if self._in_flight > self.stats.peak_in_flight:
            self.stats.peak_in_flight = self._in_flight
        self._send(fetch)

    def _send(self, fetch: _Fetch) -> None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                self._write(connection, fetch)
                return
        self._loop.create_task(self._open_and_send(fetch))

    async def _open_and_send(self, fetch: _Fetch) -> None:
        try:
            _, connection = await asyncio.wait_for(self._loop.create_connection(
                lambda: AnswerConnection(self, "GET"), self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl else None), self.timeout_s)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            self._finish(fetch, network_outcome(f"{type(exc).__name__}: {exc}".rstrip(": ")))
            return
        self.stats.connections_opened += 1
        self._write(connection, fetch)

    def _write(self, connection: AnswerConnection, fetch: _Fetch) -> None:
        fetch.deadline_s = time.monotonic() + self.timeout_s
        fetch.answered = False
        self._timeouts.append(fetch)
        connection.send(fetch, fetch.data)

    # ------------------------------------------------------------------ answers (AnswerConnection's owner)

    def answered(self, connection: AnswerConnection, fetch: _Fetch, response: Response, keep: bool) -> None:
        fetch.answered = True
        connection.request = None
        if keep and not connection.closed:
            self._idle.append(connection)
        else:
            connection.abort()
        self._finish(fetch, fetch_outcome(response))

    def failed(self, connection: AnswerConnection, fetch: _Fetch, reason: str) -> None:
        fetch.answered = True
        connection.request = None
        silent_reuse = connection.answers > 0 and not connection.buffer
        connection.abort()
        if silent_reuse and not fetch.resent:   # the server's idle timeout raced the request
            fetch.resent = True
            self.stats.resent += 1
            self._send(fetch)
            return
        self._finish(fetch, network_outcome(reason))

    def forget(self, connection: AnswerConnection) -> None:
        """An idle connection closed by the server: skipped when popped from the idle list."""

    def _finish(self, fetch: _Fetch, outcome: FetchOutcome) -> None:
        self._in_flight -= 1
        self.stats.fetched += 1
        self.answer(fetch.ticket, outcome)
        if self._waiting and self._in_flight < self.max_in_flight:
            self._start(self._waiting.popleft())

    def _sweep(self) -> None:
        """Fail the fetches in flight past their timeout (their connection is dropped)."""
        now_s = time.monotonic()
        while self._timeouts and (self._timeouts[0].answered or self._timeouts[0].deadline_s <= now_s):
            fetch = self._timeouts.popleft()
            connection = fetch.connection
            if fetch.answered or connection is None or connection.request is not fetch:
                continue
            fetch.answered = True
            connection.request = None
            connection.abort()
            self._finish(fetch, network_outcome(f"TimeoutError: no answer within {self.timeout_s:g} s"))
        self._loop.call_later(SWEEP_S, self._sweep)
