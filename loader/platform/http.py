"""A lean keep-alive HTTP/1.1 client for the loader's hot path: one connection per thread.

The loader sends one non-blocking invoke per planned invocation and fetches one record per
completion, thousands per second from Python.  ``requests`` spent 335-450 µs of CPU per call
and ``http.client`` 124 µs, most of it parsing headers through the ``email`` package and
sending headers and body in two system calls (bench/http_client_cost.py).  This client
writes each request in one ``sendall`` and parses the answer with byte splits: what
OpenWhisk answers (status line, headers, a body framed by ``Content-Length``, chunked
transfer coding, or the end of the connection) and nothing more (no 100-continue, no
redirects, no compression, no proxies).

Before reusing an idle connection, it checks (as urllib3 does, with ``poll``: ``select`` fails
on descriptors above 1023) whether the server closed it meanwhile, and reconnects.  When the close races the request anyway (nothing came back on a
reused connection), idempotent requests (GET, HEAD, PUT, DELETE) are sent once more on a new
connection; an invoke (POST) fails as a connection error rather than risk a duplicate.
Network failures and malformed answers raise :class:`TransportError` (:class:`NotSent` when
no connection could even be opened, so nothing was sent); HTTP statuses are returned, never
raised.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

MAX_HEAD_BYTES = 65_536      # status line and headers of one answer, at most
RECV_BYTES = 65_536
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_CLOSED_WITHOUT_ANSWER = "RemoteDisconnected: Remote end closed connection without response"


class TransportError(OSError):
    """No HTTP answer: connection refused or reset, timeout, TLS failure, malformed response."""


class NotSent(TransportError):
    """No connection could be opened (refused, unreachable, TLS handshake failed): nothing was sent."""


class _NoAnswer(TransportError):
    """The connection ended before the first byte of the answer."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]   # lower-case names; repeated headers joined with ", "
    body: bytes


class _Connection:
    """One socket and the bytes read past the previous answer."""

    __slots__ = ("sock", "buffer", "used")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()
        self.used = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self) -> bool:
        """Read more bytes into the buffer; False at the end of the connection."""
        chunk = self.sock.recv(RECV_BYTES)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def read_until(self, marker: bytes, limit: int, what: str) -> bytes:
        """Bytes up to and without ``marker``, which is consumed."""
        start = 0
        while True:
            found = self.buffer.find(marker, start)
            if found >= 0:
                data = bytes(self.buffer[:found])
                del self.buffer[:found + len(marker)]
                return data
            if len(self.buffer) > limit:
                raise TransportError(f"malformed response: {what} longer than {limit} bytes")
            start = max(0, len(self.buffer) - len(marker) + 1)
            if not self._fill():
                raise TransportError(f"connection closed in the middle of the {what}")

    def read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._fill():
                raise TransportError(f"connection closed after {len(self.buffer)} of {count} body bytes")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def read_to_end(self) -> bytes:
        while self._fill():
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


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
        default_port = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if self.port == default_port else f"{host}:{self.port}"
        self._ssl_context = None
        if self.scheme == "https":
            self._ssl_context = ssl.create_default_context()
            if not tls_verify:
                self._ssl_context.check_hostname = False
                self._ssl_context.verify_mode = ssl.CERT_NONE
        self._local = threading.local()
        self._all: list[_Connection] = []
        self._all_lock = threading.Lock()

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of an https origin (None for http)."""
        return self._ssl_context

    # ------------------------------------------------------------------ connections

    def _connect(self) -> _Connection:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        conn = _Connection(sock)
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._all_lock:
            try:
                self._all.remove(conn)
            except ValueError:
                pass

    def _connection(self) -> _Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and _dropped(conn.sock):
            self._discard(conn)
            conn = None
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    # ------------------------------------------------------------------ requests

    def encode_request(self, method: str, path: str, *, query: dict[str, str] | None = None,
                       body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
        """The bytes of one request to this origin (head and body, sent in one write)."""
        url = self.prefix + path + ("?" + urlencode(query) if query else "")
        head = [f"{method} {url} HTTP/1.1", f"Host: {self._host_header}"]
        head.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        if body is not None or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body or b'')}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None,
                body: bytes | None = None, headers: dict[str, str] | None = None) -> Response:
        """One request on this thread's connection; raises :class:`TransportError` without an answer."""
        data = self.encode_request(method, path, query=query, body=body, headers=headers)
        try:
            try:
                conn = self._connection()
            except (OSError, ValueError) as exc:
                raise NotSent(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
            try:
                return self._exchange(conn, method, data)
            except _NoAnswer:
                # The server closed the kept-alive connection as we reused it (an idle timeout
                # racing our request).  Only idempotent requests are sent again.
                if not (conn.used and method in _IDEMPOTENT):
                    raise
                conn = self._connection()
                return self._exchange(conn, method, data)
        except TransportError:
            raise
        except (OSError, ValueError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None

    def _exchange(self, conn: _Connection, method: str, data: bytes) -> Response:
        """Send ``data``, read one answer; on any failure the connection is discarded."""
        try:
            try:
                conn.sock.sendall(data)
                while not conn.buffer:
                    if not conn._fill():
                        raise _NoAnswer(_CLOSED_WITHOUT_ANSWER)
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise _NoAnswer(f"{type(exc).__name__}: {exc}") from None
            response, keep = _read_response(conn, method)
        except BaseException:
            self._discard(conn)
            raise
        conn.used = True
        if not keep:
            self._discard(conn)
        return response

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def parse_head(head: bytes) -> tuple[int, bytes, dict[str, str]]:
    """A response's status line and headers (without the blank line): status, version, headers
    (lower-case names; repeated headers joined with ", "); :class:`TransportError` if malformed."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise TransportError(f"malformed response: status line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise TransportError(f"malformed response: header line {line[:100]!r}")
        key = name.strip().lower().decode("latin-1")
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return int(code), version, headers


def _read_response(conn: _Connection, method: str) -> tuple[Response, bool]:
    """One answer (interim 1xx answers skipped) and whether the connection can be reused."""
    while True:
        status, version, headers = parse_head(conn.read_until(b"\r\n\r\n", MAX_HEAD_BYTES, "response head"))
        if 100 <= status < 200 and status != 101:
            continue
        break
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version == b"HTTP/1.1" or "keep-alive" in connection)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, b""), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Response(status, headers, _read_chunked(conn)), keep
    length = headers.get("content-length")
    if length is not None:
        try:
            count = int(length.split(",")[0])
        except ValueError:
            raise TransportError(f"malformed response: Content-Length {length[:40]!r}") from None
        if count < 0:
            raise TransportError(f"malformed response: Content-Length {length[:40]!r}")
        return Response(status, headers, conn.read_exactly(count)), keep
    return Response(status, headers, conn.read_to_end()), False


def _read_chunked(conn: _Connection) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = conn.read_until(b"\r\n", 1024, "chunk size line")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise TransportError(f"malformed response: chunk size {size_line[:40]!r}") from None
        if size == 0:
            while conn.read_until(b"\r\n", MAX_HEAD_BYTES, "trailer"):  # trailers end with an empty line
                pass
            return b"".join(parts)
        parts.append(conn.read_exactly(size))
        if conn.read_exactly(2) != b"\r\n":
            raise TransportError("malformed response: chunk not followed by CRLF")


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle keep-alive socket was closed by the peer (readable while idle means EOF).

    ``poll``, not ``select``: ``select`` cannot watch descriptors above 1023, and a loader holding
    many files would take every connection for closed (keep-alive silently off).
    """
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
