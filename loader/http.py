"""A lean keep-alive HTTP(S) transport on ``http.client``: one connection per thread.

The loader's hot path (one non-blocking invoke per planned invocation, one record fetch
per completion) measured 335-450 µs of CPU per call through ``requests`` against 72-98 µs
through ``http.client`` (bench/http_client_cost.py), and the difference decides whether
1,000 invocations/s go out on time on two cores (docs/performance.md).

Before reusing an idle connection, it checks (as urllib3 does) whether the server closed
it meanwhile, and reconnects instead of failing the next request; when the close races the
request anyway, idempotent requests (GET, HEAD, PUT, DELETE) are sent once more on a new
connection, and an invoke (POST) fails as a connection error rather than risk a duplicate.  Network failures
raise :class:`TransportError`; HTTP statuses are returned, never raised.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit


class TransportError(OSError):
    """No HTTP answer: connection refused or reset, timeout, TLS failure, malformed response."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]   # lower-case names
    body: bytes


class HttpTransport:
    """Requests to one origin (``scheme://host:port[/prefix]``), thread-safe via one connection per thread."""

    def __init__(self, base_url: str, *, tls_verify: bool = True, timeout_s: float = 10.0):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self._ssl_context = None
        if self.scheme == "https":
            self._ssl_context = ssl.create_default_context()
            if not tls_verify:
                self._ssl_context.check_hostname = False
                self._ssl_context.verify_mode = ssl.CERT_NONE
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._all_lock = threading.Lock()

    def _new_connection(self) -> http.client.HTTPConnection:
        if self._ssl_context is not None:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s,
                                               context=self._ssl_context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._new_connection()
        elif conn.sock is not None and _dropped(conn.sock):
            conn.close()
        return conn

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None,
                body: bytes | None = None, headers: dict[str, str] | None = None) -> Response:
        """One request on this thread's connection; raises :class:`TransportError` without an answer."""
        url = self.prefix + path + ("?" + urlencode(query) if query else "")
        conn = self._connection()
        reused = conn.sock is not None
        try:
            try:
                conn.request(method, url, body=body, headers=headers or {})
                response = conn.getresponse()
            except _CLOSED_BY_PEER:
                # The server closed the kept-alive connection as we reused it (an idle timeout
                # racing our request).  Only idempotent requests are sent again: an invoke
                # might have been received, and must not be duplicated.
                conn.close()
                if not (reused and method in _IDEMPOTENT):
                    raise
                conn.request(method, url, body=body, headers=headers or {})
                response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransportError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        if response.will_close:
            conn.close()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_CLOSED_BY_PEER = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle keep-alive socket was closed by the peer (readable while idle means EOF)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
