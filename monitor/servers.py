"""The two UNIX socket servers: notifications in, measurements out (docs/monitor.md).

One :class:`MessageServer` per socket: an accept thread hands each connection to a small pool
of worker threads, which read one message (until ``\\n``, end of stream, ``max_message_bytes``
or ``read_timeout_s``), call the socket's handler and send its answer, if any.  A bad message is
logged and dropped (the measurement socket answers an error object); the server keeps serving.
An empty connection (connect then close) is a readiness probe and is ignored.
"""

from __future__ import annotations

import enum
import logging
import os
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from faasload.monitor_protocol import (
    ActivationQuery,
    ErrorCode,
    ProtocolError,
    encode_activation,
    encode_error,
    encode_samples,
    parse_notification,
    parse_query,
)

from . import attribution
from .registry import Registry

log = logging.getLogger(__name__)

ACCEPT_POLL_S = 0.2
WORKERS_PER_SOCKET = 8
#: How long an activation query may wait for the first sample after the activation's end.
TRAILING_SAMPLE_WAIT_RESOLUTIONS = 2.5


class ServerError(RuntimeError):
    """A socket could not be created."""


class ReadOutcome(enum.Enum):
    COMPLETE = "complete"    # newline or end of stream
    TOO_LARGE = "too_large"  # more than max_message_bytes without either
    TIMEOUT = "timeout"      # the client stopped sending
    ERROR = "error"          # the connection failed


def read_message(conn: socket.socket, max_bytes: int, timeout_s: float) -> tuple[bytes, ReadOutcome]:
    """Read one message: up to the first newline, or to end of stream."""
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            return b"".join(chunks), ReadOutcome.TIMEOUT
        conn.settimeout(remaining_s)
        try:
            chunk = conn.recv(min(65536, max_bytes + 1 - size))
        except TimeoutError:
            return b"".join(chunks), ReadOutcome.TIMEOUT
        except OSError:
            return b"".join(chunks), ReadOutcome.ERROR
        if not chunk:
            return b"".join(chunks), ReadOutcome.COMPLETE
        newline = chunk.find(b"\n")
        if newline >= 0:
            chunks.append(chunk[:newline])
            size += newline
            return b"".join(chunks), (ReadOutcome.COMPLETE if size <= max_bytes else ReadOutcome.TOO_LARGE)
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return b"".join(chunks), ReadOutcome.TOO_LARGE


def _drain(conn: socket.socket, limit_bytes: int = 1 << 20, timeout_s: float = 0.2) -> None:
    """Discard what the client still sends (bounded), so that closing does not reset."""
    conn.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + timeout_s
    drained = 0
    while drained < limit_bytes and time.monotonic() < deadline:
        conn.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            chunk = conn.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        drained += len(chunk)


def _excerpt(raw: bytes) -> str:
    text = repr(raw[:80])
    return text + ("..." if len(raw) > 80 else "")


def prepare_socket_path(path: Path) -> None:
    """Create the runtime directory (0755) if missing; remove a stale socket, refuse a live one."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o755, parents=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ServerError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
    except OSError:
        path.unlink()  # stale: nobody listens
        return
    finally:
        probe.close()
    raise ServerError(f"{path}: another process is listening on it (another monitor?)")


class MessageServer:
    """One UNIX socket, one message per connection; ``handler(raw) -> answer bytes | None``."""

    def __init__(self, name: str, path: Path, handler: Callable[[bytes, ReadOutcome], bytes | None], *,
                 mode: int, max_message_bytes: int, read_timeout_s: float):
        self.name = name
        self.path = Path(path)
        self.handler = handler
        self.mode = mode
        self.max_message_bytes = max_message_bytes
        self.read_timeout_s = read_timeout_s
        self.connections = 0
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        prepare_socket_path(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, self.mode)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ServerError(f"cannot listen on {self.path}: {exc.strerror or exc}") from None
        self._sock = sock
        self._pool = ThreadPoolExecutor(WORKERS_PER_SOCKET, thread_name_prefix=f"{self.name}-conn")
        self._thread = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True)
        self._thread.start()
        log.info("%s socket listening on %s (mode %04o)", self.name, self.path, self.mode)

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not selector.select(ACCEPT_POLL_S):
                    continue
                try:
                    conn, _ = self._sock.accept()
                except OSError:
                    continue
                self.connections += 1
                self._pool.submit(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            started_s = time.monotonic()
            raw, outcome = read_message(conn, self.max_message_bytes, self.read_timeout_s)
            log.debug("%s: %d bytes, %s after %.1f ms", self.name, len(raw), outcome.value,
                      (time.monotonic() - started_s) * 1000)
            try:
                answer = self.handler(raw, outcome)
            except Exception:  # a handler bug must not stop the server  # noqa: BLE001
                log.exception("%s: handler failed on %s", self.name, _excerpt(raw))
                answer = encode_error(ErrorCode.BAD_REQUEST, "internal error in the monitor (see its log)")
            if answer is not None:
                conn.settimeout(self.read_timeout_s)
                conn.sendall(answer + b"\n")
            if outcome is ReadOutcome.TOO_LARGE:
                _drain(conn)  # closing on unread data would reset the connection, answer included
        except OSError as exc:
            log.debug("%s: connection failed: %s", self.name, exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._sock is not None:
            self._sock.close()
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class Handlers:
    """What the two sockets do with a message; counts what was dropped."""

    def __init__(self, registry: Registry, resolution_s: float, clock_epoch_s: Callable[[], float] = time.time,
                 attribution_slack_s: float = attribution.DEFAULT_SLACK_S):
        self.registry = registry
        self.resolution_s = resolution_s
        self.attribution_slack_s = attribution_slack_s
        self.epoch_s = clock_epoch_s
        self.notifications = 0
        self.dropped_notifications = 0
        self.queries = 0
        self.bad_queries = 0

    def notification(self, raw: bytes, outcome: ReadOutcome) -> None:
        if outcome is ReadOutcome.COMPLETE and not raw.strip():
            log.debug("empty notification connection (probe) ignored")
            return None
        try:
            if outcome is not ReadOutcome.COMPLETE:
                raise ProtocolError(_outcome_text(outcome, raw))
            notice = parse_notification(raw)
        except ProtocolError as exc:
            self.dropped_notifications += 1
            log.warning("notification dropped: %s: %s", exc, _excerpt(raw))
            return None
        self.notifications += 1
        log.debug("notification %s", notice)
        self.registry.apply(notice)
        return None

    def query(self, raw: bytes, outcome: ReadOutcome) -> bytes | None:
        if outcome is ReadOutcome.COMPLETE and not raw.strip():
            log.debug("empty measurement connection (probe) closed without answer")
            return None
        try:
            if outcome is ReadOutcome.TOO_LARGE:
                raise ProtocolError(_outcome_text(outcome, raw), ErrorCode.TOO_LARGE)
            if outcome is not ReadOutcome.COMPLETE:
                raise ProtocolError(_outcome_text(outcome, raw))
            query = parse_query(raw)
            self.queries += 1
            if isinstance(query, ActivationQuery):
                return self._activation(query)
            return encode_samples(self.registry.window(query.container, query.start_s, query.end_s))
        except ProtocolError as exc:
            if exc.code in (ErrorCode.BAD_REQUEST, ErrorCode.TOO_LARGE):
                self.bad_queries += 1
                log.warning("bad measurement request: %s: %s", exc, _excerpt(raw))
            else:
                log.info("measurement request: %s", exc)
            return encode_error(exc.code, str(exc))

    def _activation(self, query: ActivationQuery) -> bytes:
        try:
            binding = self.registry.activation_binding(query.activation)
        except ProtocolError as exc:
            if exc.code is not ErrorCode.UNKNOWN_ACTIVATION:
                raise
            # no notice bound it: attribution by name and running stretch (monitor/attribution.py)
            if query.end_ms is not None:
                self._wait_for_trailing_sample(query.end_ms / 1000)
            return encode_activation(attribution.answer(self.registry, query, slack_s=self.attribution_slack_s))
        if binding.end_s is not None:
            self._wait_for_trailing_sample(binding.end_s)
        return encode_activation(self.registry.activation(query.activation))

    def _wait_for_trailing_sample(self, end_s: float) -> None:
        """Let the sampler take the sample after the end."""
        wait_s = end_s + TRAILING_SAMPLE_WAIT_RESOLUTIONS * self.resolution_s - self.epoch_s()
        if 0 < wait_s <= 1.0:
            time.sleep(wait_s)


def _outcome_text(outcome: ReadOutcome, raw: bytes) -> str:
    if outcome is ReadOutcome.TOO_LARGE:
        return "message longer than sockets:max_message_bytes"
    if outcome is ReadOutcome.TIMEOUT:
        return f"message incomplete after the read timeout ({len(raw)} bytes, no newline nor end of stream)"
    return f"connection failed after {len(raw)} bytes"
