"""A real HTTP proxy in front of localwhisk that misbehaves on request, as a gateway in front of OpenWhisk can.

``PlatformProxy(upstream, decide)`` listens on a free port; for each request ``decide(method, path, body)``
returns what to do (``body`` is the parsed JSON body of a POST, else None):

* ``FORWARD``: pass it on and relay the answer;
* ``Delay(s)``: wait ``s`` seconds, then forward;
* ``Answer(status, headers)``: answer without forwarding (the platform never sees the request);
* ``AnswerAfterForwarding(status)``: forward (the platform runs it), then answer ``status`` instead
  (a gateway timing out on an accepted call).

``requests`` lists ``(method, path, body, what was done)``.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FORWARD = "forward"


@dataclass(frozen=True)
class Delay:
    seconds: float


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AnswerAfterForwarding:
    status: int


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _handle(self):
        proxy: PlatformProxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw and self.command == "POST" else None
        decision = proxy.decide(self.command, self.path, body)
        with proxy.lock:
            proxy.requests.append((self.command, self.path, body, decision))
        if isinstance(decision, Answer):
            return self._answer(decision.status, {"error": f"proxy answered {decision.status}"}, decision.headers)
        if isinstance(decision, Delay):
            time.sleep(decision.seconds)
        status, headers, data = proxy.forward(self.command, self.path, dict(self.headers), raw)
        if isinstance(decision, AnswerAfterForwarding):
            return self._answer(decision.status, {"error": "The server did not answer in time."}, {})
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, status: int, payload: dict, headers: dict):
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class PlatformProxy:
    def __init__(self, upstream: str, decide: Callable[[str, str, dict | None], object] = lambda *_: FORWARD):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.decide = decide
        self.requests: list[tuple] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.proxy = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, list, bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def posts(self, what=None) -> list[tuple]:
        with self.lock:
            return [r for r in self.requests if r[0] == "POST" and (what is None or r[3] == what)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
