"""Requests in flight on a pool of keep-alive connections to one endpoint, on the running event loop.

What the sender processes' invokes (:class:`loader.sending.event_loop.LoopInvoker`) and the
record fetches (:class:`loader.completion.fetch_loop.RecordFetches`) share: each request is
written on an idle connection of the pool (:class:`~loader.platform.http_async.AnswerConnection`,
one request at a time), or on a new one when every open one is busy, up to ``max_in_flight``
requests in flight; beyond it, requests wait in order for an answer to free a place.  A request
without an answer within ``timeout_s`` fails and its connection is dropped (:meth:`sweep`).

What an answer or a failure means (an outcome, a retry) is the subclass's: it implements
:meth:`_answered_request`, :meth:`_failed_request` (a timeout is one) and :meth:`_connect_failed`,
and calls :meth:`_release` once a request is finished.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import Generic, Protocol, TypeVar

from loader.platform.http import Response
from loader.platform.http_async import AnswerConnection


class PoolRequest(Protocol):
    """A request of the pool: its bytes, the connection carrying it, its deadline, whether it was answered."""

    data: bytes
    connection: AnswerConnection | None
    answered: bool
    deadline_s: float


class PoolStats(Protocol):
    connections_opened: int
    peak_in_flight: int
    peak_waiting: int
    held: int       # requests that waited for the in-flight cap


R = TypeVar("R", bound=PoolRequest)
S = TypeVar("S", bound=PoolStats)


class ConnectionPool(Generic[R, S]):
    """Keep-alive connections to ``host:port`` and the requests in flight on them (see the module)."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None, method: str, *,
                 timeout_s: float, max_in_flight: int, stats: S):
        self.host, self.port, self.ssl = host, port, ssl_context
        self.method = method
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.stats = stats
        self.loop = asyncio.get_running_loop()
        self.idle: list[AnswerConnection] = []
        self.in_flight = 0
        self.waiting: collections.deque[R] = collections.deque()
        self.timeouts: collections.deque[R] = collections.deque()   # in send order: one timeout for all

    # ------------------------------------------------------------------ for the subclass

    def _answered_request(self, request: R, response: Response) -> None:
        """``request`` got ``response`` (its connection is back in the pool or dropped)."""
        raise NotImplementedError

    def _failed_request(self, request: R, reason: str, silent_reuse: bool) -> None:
        """``request``'s connection failed before a whole answer, or gave none within ``timeout_s``
        (``silent_reuse``: a kept-alive connection closed by the server just as it was reused,
        nothing came back)."""
        raise NotImplementedError

    def _connect_failed(self, request: R, reason: str) -> None:
        """No connection could be opened for ``request``: nothing was sent."""
        raise NotImplementedError

    def _written(self, request: R) -> None:
        """``request`` was just written on a connection (a count, for a subclass that keeps one)."""

    # ------------------------------------------------------------------ requests

    def _admit(self, request: R) -> None:
        """Send ``request`` now, or once the cap on requests in flight allows."""
        if self.in_flight >= self.max_in_flight:
            self.stats.held += 1
            self.waiting.append(request)
            if len(self.waiting) > self.stats.peak_waiting:
                self.stats.peak_waiting = len(self.waiting)
            return
        self.in_flight += 1
        if self.in_flight > self.stats.peak_in_flight:
            self.stats.peak_in_flight = self.in_flight
        self._send(request)

    def _send(self, request: R) -> None:
        """Write ``request`` on an idle connection, or on a new one (it keeps its place in flight)."""
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                self._write(connection, request)
                return
        self.loop.create_task(self._open_and_send(request))

    async def _open_and_send(self, request: R) -> None:
        try:
            _, connection = await asyncio.wait_for(self.loop.create_connection(
                lambda: AnswerConnection(self, self.method), self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl else None), self.timeout_s)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            self._connect_failed(request, f"{type(exc).__name__}: {exc}".rstrip(": "))
            return
        self.stats.connections_opened += 1
        self._write(connection, request)

    def _write(self, connection: AnswerConnection, request: R) -> None:
        request.deadline_s = time.monotonic() + self.timeout_s
        request.answered = False
        self.timeouts.append(request)
        self._written(request)
        connection.send(request, request.data)

    def _release(self) -> None:
        """A request in flight is finished: its place goes to the first one waiting."""
        self.in_flight -= 1
        if self.waiting and self.in_flight < self.max_in_flight:
            self._admit(self.waiting.popleft())

    @property
    def busy(self) -> bool:
        return self.in_flight > 0 or bool(self.waiting)

    # ------------------------------------------------------------------ answers (AnswerConnection's owner)

    def answered(self, connection: AnswerConnection, request: R, response: Response, keep: bool) -> None:
        request.answered = True
        connection.request = None
        if keep and not connection.closed:
            self.idle.append(connection)
        else:
            connection.abort()
        self._answered_request(request, response)

    def failed(self, connection: AnswerConnection, request: R, reason: str) -> None:
        request.answered = True
        connection.request = None
        silent_reuse = connection.answers > 0 and not connection.buffer
        connection.abort()
        self._failed_request(request, reason, silent_reuse)

    def forget(self, connection: AnswerConnection) -> None:
        """An idle connection closed by the server: it is skipped when popped from ``idle``."""

    def sweep(self) -> None:
        """Fail the requests in flight past their timeout (their connection is dropped)."""
        now_s = time.monotonic()
        timeouts = self.timeouts
        while timeouts and (timeouts[0].answered or timeouts[0].deadline_s <= now_s):
            request = timeouts.popleft()
            connection = request.connection
            if request.answered or connection is None or connection.request is not request:
                continue
            request.answered = True
            connection.request = None
            connection.abort()
            self._failed_request(request, f"TimeoutError: no answer within {self.timeout_s:g} s", False)

    def close(self) -> None:
        for connection in self.idle:
            connection.abort()
        self.idle.clear()
