"""The measurement socket over TCP, for loaders on other hosts (docs/monitor.md, Measurement over TCP).

Each connection opens with the token line of :mod:`faasload.monitor_tcp`; when the token does
not match the one of ``sockets:token_file``, the connection is closed without a byte of answer
(and counted).  After the token, one query exactly as on the UNIX measurement socket, answered
by the same handler.  An accept thread hands each connection to a few worker threads.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from faasload.monitor_protocol import ErrorCode, encode_error
from faasload.monitor_tcp import MAX_AUTH_BYTES, split_auth, token_matches

from .servers import ACCEPT_POLL_S, WORKERS_PER_SOCKET, ReadOutcome, ServerError, _drain

log = logging.getLogger(__name__)

#: Refused connections logged at WARNING before switching to DEBUG.
REFUSAL_WARNINGS = 10


def _read_authenticated(conn: socket.socket, token: str, max_bytes: int,
                        timeout_s: float) -> tuple[bool, bytes, ReadOutcome]:
    """(token accepted, the query's bytes, how the read ended): the token line, then one message."""
    deadline = time.monotonic() + timeout_s
    buffer = b""
    authenticated = False
    while True:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            return authenticated, buffer, ReadOutcome.TIMEOUT
        conn.settimeout(remaining_s)
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            return authenticated, buffer, ReadOutcome.TIMEOUT
        except OSError:
            return authenticated, buffer, ReadOutcome.ERROR
        buffer += chunk
        if not authenticated:
            if b"\n" not in buffer:
                if not chunk or len(buffer) > MAX_AUTH_BYTES:
                    return False, b"", ReadOutcome.COMPLETE
                continue
            given, buffer = split_auth(buffer)
            if not token_matches(given, token):
                return False, b"", ReadOutcome.COMPLETE
            authenticated = True
        newline = buffer.find(b"\n")
        if newline >= 0:
            message = buffer[:newline]
            return True, message, ReadOutcome.COMPLETE if len(message) <= max_bytes else ReadOutcome.TOO_LARGE
        if len(buffer) > max_bytes:
            return True, buffer, ReadOutcome.TOO_LARGE
        if not chunk:
            return True, buffer, ReadOutcome.COMPLETE


class TcpMeasurementServer:
    """``handler(raw, outcome) -> answer | None``, as the UNIX measurement socket's, behind the token."""

    def __init__(self, host: str, port: int, token: str, handler: Callable[[bytes, ReadOutcome], bytes | None], *,
                 max_message_bytes: int, read_timeout_s: float):
        self.host, self.port = host, port
        self.handler = handler
        self.max_message_bytes = max_message_bytes
        self.read_timeout_s = read_timeout_s
        self.connections = 0
        self.refused = 0
        self._token = token
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:  # never show the token
        return f"TcpMeasurementServer({self.host}:{self.port})"

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the actual port when 0 was asked)."""
        if self._sock is None:
            return self.host, self.port
        host, port = self._sock.getsockname()[:2]
        return host, port

    def start(self) -> None:
        try:
            sock = socket.create_server((self.host, self.port), backlog=128, reuse_port=False)
        except OSError as exc:
            raise ServerError(f"cannot listen on TCP {self.host}:{self.port}: {exc.strerror or exc}") from None
        self._sock = sock
        self._pool = ThreadPoolExecutor(WORKERS_PER_SOCKET, thread_name_prefix="measurement-tcp-conn")
        self._thread = threading.Thread(target=self._accept_loop, name="measurement-tcp-accept", daemon=True)
        self._thread.start()
        log.info("measurement socket also on TCP %s:%d (clients must send the token of sockets:token_file)",
                 *self.address)

    def _accept_loop(self) -> None:
        sock, pool = self._sock, self._pool
        assert sock is not None and pool is not None
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not selector.select(ACCEPT_POLL_S):
                    continue
                try:
                    conn, peer = sock.accept()
                except OSError:
                    continue
                self.connections += 1
                pool.submit(self._serve, conn, peer)

    def _serve(self, conn: socket.socket, peer) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            accepted, raw, outcome = _read_authenticated(conn, self._token, self.max_message_bytes,
                                                         self.read_timeout_s)
            if not accepted:
                self.refused += 1
                level = logging.WARNING if self.refused <= REFUSAL_WARNINGS else logging.DEBUG
                log.log(level, "measurement TCP connection from %s refused: no valid token (%d refused so far)",
                        peer[0], self.refused)
                return
            try:
                answer = self.handler(raw, outcome)
            except Exception:  # a handler bug must not stop the server  # noqa: BLE001
                log.exception("measurement over TCP: handler failed")
                answer = encode_error(ErrorCode.BAD_REQUEST, "internal error in the monitor (see its log)")
            if answer is not None:
                conn.settimeout(self.read_timeout_s)
                conn.sendall(answer + b"\n")
            if outcome is ReadOutcome.TOO_LARGE:
                _drain(conn)  # closing on unread data would reset the connection, answer included
        except OSError as exc:
            log.debug("measurement TCP connection failed: %s", exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._sock is not None:
            self._sock.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
