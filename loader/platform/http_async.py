"""One keep-alive HTTP/1.1 connection on an asyncio loop, one request at a time, answers parsed as they arrive.

The non-blocking side of :mod:`loader.platform.http`: the sender processes' invokes
(:mod:`loader.sending.event_loop`) and the completion side's record fetches
(:mod:`loader.completion.fetch_loop`) each keep a pool of these
(:class:`loader.platform.connection_pool.ConnectionPool`).  The bytes of a request come
from :meth:`loader.platform.http.HttpTransport.encode_request`; answers are parsed by
:mod:`loader.platform.http_parse`.  The pool (the *owner*) is told of each answer
(``answered``), of each failure (``failed``) and of an idle connection closed by the server
(``forget``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from loader.platform.http import Response, TransportError
from loader.platform.http_parse import finish_at_eof, parse_response


class Owner(Protocol):
    def answered(self, connection: AnswerConnection, request: Any, response: Response, keep: bool) -> None: ...
    def failed(self, connection: AnswerConnection, request: Any, reason: str) -> None: ...
    def forget(self, connection: AnswerConnection) -> None: ...


class AnswerConnection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time.

    A request is any object with ``connection`` and ``answered`` attributes; ``answers`` counts
    the answers this connection carried (a reused connection has ``answers`` > 0).
    """

    def __init__(self, owner: Owner, method: str):
        self.owner = owner
        self.method = method
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.request: Any = None
        self.closed = False
        self.answers = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.request is None:  # an answer nobody asked for: the server is confused; drop it
            self.abort()
            return
        try:
            found = parse_response(self.buffer, self.method)
        except TransportError as exc:
            self.owner.failed(self, self.request, str(exc))
            return
        if found is not None:
            response, keep = found
            self.answers += 1
            self.owner.answered(self, self.request, response, keep)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        request, self.request = self.request, None
        if request is None or request.answered:
            self.owner.forget(self)
            return
        try:
            response = finish_at_eof(self.buffer, self.method)
        except TransportError as error:
            self.owner.failed(self, request, str(error) if exc is None else f"{type(exc).__name__}: {exc}")
            return
        self.answers += 1
        self.owner.answered(self, request, response, False)

    def send(self, request: Any, data: bytes) -> None:
        self.request = request
        request.connection = self
        assert self.transport is not None
        self.transport.write(data)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
