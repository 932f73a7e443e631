"""The HTTP/1.1 server of the REST API (standard library, one thread per connection).

Keep-alive connections; Nagle off and each response written in one ``write``: a response sent
in two writes with Nagle on waits for the client's delayed ACK, ~40 ms per request.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from localwhisk.http import messages, router
from localwhisk.invoker import now_ms

LOG = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024 * 1024


class ApiRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "localwhisk"

    def log_message(self, fmt, *args):
        LOG.debug("%s " + fmt, self.address_string(), *args)

    def _handle(self) -> None:
        received_ms = now_ms()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            body = b""
        else:
            body = self.rfile.read(length) if length else b""
        parts = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
        request = messages.Request(method=self.command, path=parts.path or "/", query=query,
                              headers={k.lower(): v for k, v in self.headers.items()}, body=body,
                              request_id=messages.transaction_id(), received_ms=received_ms)
        try:
            response = router.dispatch(self.server.platform, request)
        except Exception:  # noqa: BLE001 (a bug answers 500; the server keeps serving)
            LOG.exception("error handling %s %s", self.command, self.path)
            from localwhisk.errors import ApiError
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
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
        self.wfile.flush()

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
        return f"http://{host}:{port}"
