"""The HTTP/1.1 server of the REST API (standard library, one thread per connection).

Keep-alive connections; Nagle off and each response written in one ``write``: a response sent
in two writes with Nagle on waits for the client's delayed ACK, ~40 ms per request.  Request
bodies are framed by :mod:`localwhisk.http.framing`; a body that cannot be framed is answered
(400, 413, 501) and the connection closed.  ``HEAD`` answers the ``GET``'s status and headers, no body.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from localwhisk.errors import ApiError
from localwhisk.http import framing, messages, router
from localwhisk.invoker import now_ms

LOG = logging.getLogger(__name__)
#: Largest request body (any route); OpenWhisk's own limits (1 MB payloads and parameters,
#: 48 MB code) are checked by the handlers.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: After answering a request whose body was left unread, how long (and how much) is read and
#: discarded before closing, so that the close does not reset the connection under the answer.
DRAIN_S = 1.0


class ApiRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "localwhisk"
    server: ApiServer

    def log_message(self, fmt, *args):
        LOG.debug("%s " + fmt, self.address_string(), *args)

    def handle_expect_100(self) -> bool:
        """No ``100 Continue`` for a body that will be refused: the error answers at once."""
        try:
            framing.declared_length(self.headers, MAX_BODY_BYTES)
        except framing.FramingError:
            return True
        return super().handle_expect_100()

    def _handle(self) -> None:
        received_ms = now_ms()
        request_id = messages.transaction_id()
        try:
            body = framing.read_body(self.headers, self.rfile, MAX_BODY_BYTES)
        except framing.FramingError as exc:
            LOG.info("%s %s from %s: %s %s", self.command, self.path[:200], self.address_string(), exc.status,
                     exc.text.replace("\n", " "))
            self.close_connection = True
            response = messages.error_response(ApiError(exc.status, exc.text), request_id)
            response.headers.append(("X-Request-ID", request_id))
            self._send(response)
            self._drain()
            return
        parts = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
        request = messages.Request(method=self.command, path=parts.path or "/", query=query,
                                   headers={k.lower(): v for k, v in self.headers.items()}, body=body,
                                   request_id=request_id, received_ms=received_ms)
        try:
            response = router.dispatch(self.server.platform, request)
        except Exception:  # noqa: BLE001 (a bug answers 500; the server keeps serving)
            LOG.exception("error handling %s %s", self.command, self.path)
            response = messages.error_response(ApiError(500, "There was an internal server error."), request.request_id)
            response.headers.append(("X-Request-ID", request.request_id))
        self._send(response)

    def _send(self, response: messages.Response) -> None:
        reason = self.responses.get(response.status, ("",))[0]
        lines = [f"HTTP/1.1 {response.status} {reason}", f"Server: {self.server_version}",
                 f"Content-Type: {response.content_type}", f"Content-Length: {len(response.body)}"]
        lines += [f"{k}: {v}" for k, v in response.headers]
        if self.close_connection:
            lines.append("Connection: close")
        body = b"" if self.command == "HEAD" else response.body  # HEAD: the GET's head, no body
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.wfile.flush()

    def _drain(self) -> None:
        """Read and drop what the client still sends (bounded), after the answer went out."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + DRAIN_S
            drained = 0
            while drained <= MAX_BODY_BYTES and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _handle


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], platform):
        super().__init__(address, ApiRequestHandler)
        self.platform = platform
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        # socketserver's stub allows a bytes host; the address of a bound AF_INET/AF_INET6 socket is a str
        return f"http://{host}:{port}"  # type: ignore[str-bytes-safe]
