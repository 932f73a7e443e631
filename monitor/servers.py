"""The two UNIX socket servers: notifications in, measurements out (docs/monitor.md).

One :class:`MessageServer` per socket.  Its I/O thread accepts connections and reads each
message without blocking (until ``\\n``, end of stream, ``max_message_bytes`` or
``read_timeout_s`` after the connection was accepted); only a complete message goes to a small
pool of worker threads, which call the socket's handler and send its answer, if any.  So an
idle or slow client holds no worker: 40 idle connections do not delay a query.

The notification socket's handler answers nothing, and for an activation's notice takes a few µs
(a registry update): it runs *inline*, in the I/O thread, which then closes the connection.  What
may block (a container's lifecycle notice may ask Docker for the container's cgroup) the handler
returns as a :data:`Deferred` function: a worker runs it, then closes the connection, so that the
close still means "applied".  Handing every notice to a worker cost more than the notice: under
a storm of notices sent back to back (four notifier processes, ``bench/monitor_notices.py``) the
monitor applied 11,200-13,200 notices/s at 95-97% of a core, and a sender that does not wait for
the close made the workers' queue grow by thousands of connections, each a socket, a future and
its condition, which every young garbage collection walked (84-157 ms each).  Inline:
25,000-27,100 notices/s at 82% of a core (docs/performance.md), and notices that come faster
than they are applied wait in the listen backlog, in the kernel.

One client (a process, by its pid from ``SO_PEERCRED``) may hold at most
``max_pending_per_client`` connections without a complete message; opening more closes its
oldest.  A bad message is logged and dropped (the measurement socket answers an error object);
the server keeps serving.  An empty connection (connect then close) is a readiness probe and is
ignored.
"""

from __future__ import annotations

import enum
import logging
import os
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from faasload.errors import Failure
from faasload.monitor_protocol import ErrorCode, encode_error

log = logging.getLogger(__name__)

ACCEPT_POLL_S = 0.2
WORKERS_PER_SOCKET = 8
RECV_BYTES = 65536
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


#: The part of a message an inline handler leaves to a worker (it may block); the worker closes
#: the connection once it returned.
Deferred = Callable[[], None]
#: ``handler(raw, outcome)``: the answer (bytes) or None; an inline handler may return a Deferred.
Handler = Callable[[bytes, "ReadOutcome"], "bytes | Deferred | None"]


class ServerError(Failure):
    """A socket could not be created."""


class ReadOutcome(enum.Enum):
    COMPLETE = "complete"    # newline or end of stream
    TOO_LARGE = "too_large"  # more than max_message_bytes without either
    TIMEOUT = "timeout"      # the client stopped sending
    ERROR = "error"          # the connection failed


@dataclass(eq=False)
class Pending:
    """A connection whose message is still being read."""

    sock: socket.socket
    client: int            # the peer's pid (0 when unknown)
    deadline_s: float      # monotonic
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    draining: bool = False  # handled already (too large): what is left is read and dropped

    def feed(self, chunk: bytes, max_bytes: int) -> ReadOutcome | None:
        """Add received bytes; the outcome once the message is complete (or too large).  While
        draining, bytes are dropped until the end of the stream."""
        if not chunk:
            return ReadOutcome.COMPLETE
        if self.draining:
            return None
        newline = chunk.find(b"\n")
        if newline >= 0:
            self.chunks.append(chunk[:newline])
            self.size += newline
            return ReadOutcome.COMPLETE if self.size <= max_bytes else ReadOutcome.TOO_LARGE
        self.chunks.append(chunk)
        self.size += len(chunk)
        return ReadOutcome.TOO_LARGE if self.size > max_bytes else None

    def message(self) -> bytes:
        return b"".join(self.chunks)


def peer_pid(conn: socket.socket) -> int:
    """The pid of the process at the other end of a UNIX socket (0 when unknown)."""
    try:
        pid, _, _ = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except (OSError, AttributeError, struct.error):
        return 0
    return pid


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


def excerpt(raw: bytes) -> str:
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
    """One UNIX socket, one message per connection; ``handler(raw, outcome) -> answer bytes | None``."""

    def __init__(self, name: str, path: Path, handler: Handler, *,
                 mode: int, max_message_bytes: int, read_timeout_s: float, max_pending_per_client: int = 64,
                 inline: bool = False):
        """``inline``: the handler runs in the I/O thread: it never answers, and returns what may
        block as a :data:`Deferred` (run by a worker), or None."""
        self.name = name
        self.inline = inline
        self.path = Path(path)
        self.handler = handler
        self.mode = mode
        self.max_message_bytes = max_message_bytes
        self.read_timeout_s = read_timeout_s
        self.max_pending_per_client = max_pending_per_client
        self.connections = 0
        self.evicted = 0
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[socket.socket, Pending] = {}   # in accept order
        self._warned_clients: set[int] = set()

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
        sock.setblocking(False)
        self._sock = sock
        self._pool = ThreadPoolExecutor(WORKERS_PER_SOCKET, thread_name_prefix=f"{self.name}-conn")
        self._thread = threading.Thread(target=self._io_loop, name=f"{self.name}-io", daemon=True)
        self._thread.start()
        log.info("%s socket listening on %s (mode %04o)", self.name, self.path, self.mode)

    # ------------------------------------------------------------------ the I/O thread

    def _io_loop(self) -> None:
        listener = self._sock
        assert listener is not None, "start() first"
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            try:
                while not self._stop.is_set():
                    timeout_s = ACCEPT_POLL_S
                    if self._pending:
                        oldest = min(p.deadline_s for p in self._pending.values())
                        timeout_s = max(0.0, min(timeout_s, oldest - time.monotonic()))
                    for key, _ in selector.select(timeout_s):
                        if key.fileobj is listener:
                            self._accept(selector, listener)
                        else:
                            self._receive(selector, key.data)
                    self._expire(selector)
            finally:
                for pending in list(self._pending.values()):
                    pending.sock.close()
                self._pending.clear()

    def _accept(self, selector: selectors.BaseSelector, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        self.connections += 1
        conn.setblocking(False)
        pending = Pending(conn, peer_pid(conn), time.monotonic() + self.read_timeout_s)
        held = [p for p in self._pending.values() if p.client == pending.client]
        if pending.client and len(held) >= self.max_pending_per_client:
            oldest = held[0]
            self.evicted += 1
            if pending.client not in self._warned_clients:
                self._warned_clients.add(pending.client)
                log.warning("%s: client pid %d holds more than %d connections without a complete message "
                            "(sockets:max_pending_per_client): closing its oldest ones", self.name,
                            pending.client, self.max_pending_per_client)
            self._forget(selector, oldest)
            oldest.sock.close()
        self._pending[conn] = pending
        selector.register(conn, selectors.EVENT_READ, pending)

    def _receive(self, selector: selectors.BaseSelector, pending: Pending) -> None:
        try:
            chunk = pending.sock.recv(min(RECV_BYTES, self.max_message_bytes + 1 - pending.size))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._finish(selector, pending, ReadOutcome.ERROR)
            return
        outcome = pending.feed(chunk, self.max_message_bytes)
        if outcome is not None:
            self._finish(selector, pending, outcome)

    def _expire(self, selector: selectors.BaseSelector) -> None:
        now_s = time.monotonic()
        for pending in [p for p in self._pending.values() if p.deadline_s <= now_s]:
            self._finish(selector, pending, ReadOutcome.TIMEOUT)

    def _forget(self, selector: selectors.BaseSelector, pending: Pending) -> None:
        selector.unregister(pending.sock)
        del self._pending[pending.sock]
        if pending.client in self._warned_clients and not any(
                p.client == pending.client for p in self._pending.values()):
            self._warned_clients.discard(pending.client)

    def _finish(self, selector: selectors.BaseSelector, pending: Pending, outcome: ReadOutcome) -> None:
        if self.inline:
            self._finish_inline(selector, pending, outcome)
            return
        self._forget(selector, pending)
        pending.sock.setblocking(True)
        assert self._pool is not None, "start() first"
        try:
            self._pool.submit(self._serve, pending.sock, pending.message(), outcome)
        except RuntimeError:  # the pool is shutting down
            pending.sock.close()

    def _finish_inline(self, selector: selectors.BaseSelector, pending: Pending, outcome: ReadOutcome) -> None:
        """A message whose handler answers nothing, handled here; the close tells the sender it was.
        An oversized message is handled (refused) at once, and the rest of it read and dropped
        until its end (or the read timeout), as the workers' ``_drain`` does: closing on unread
        data would reset the connection."""
        deferred = None
        if not pending.draining:
            try:
                log.debug("%s: %d bytes, %s", self.name, pending.size, outcome.value)
                result = self.handler(pending.message(), outcome)
                if callable(result):
                    deferred = result
                elif result is not None:
                    log.error("%s: the handler answered, but this socket answers nothing; dropped", self.name)
            except Exception:  # a handler bug must not stop the server  # noqa: BLE001
                log.exception("%s: handler failed on %s", self.name, excerpt(pending.message()))
            if outcome is ReadOutcome.TOO_LARGE:
                pending.draining, pending.chunks, pending.size = True, [], 0
                return
        self._forget(selector, pending)
        if deferred is not None:
            assert self._pool is not None, "start() first"
            try:
                self._pool.submit(self._run_deferred, pending.sock, deferred)
                return
            except RuntimeError:  # the pool is shutting down
                pass
        pending.sock.close()

    def _run_deferred(self, conn: socket.socket, deferred: Deferred) -> None:
        try:
            deferred()
        except Exception:  # a handler bug must not stop the server  # noqa: BLE001
            log.exception("%s: handler failed", self.name)
        finally:
            conn.close()

    # ------------------------------------------------------------------ the workers

    def _serve(self, conn: socket.socket, raw: bytes, outcome: ReadOutcome) -> None:
        try:
            log.debug("%s: %d bytes, %s", self.name, len(raw), outcome.value)
            try:
                answer = self.handler(raw, outcome)
                assert not callable(answer), "only an inline handler defers"
            except Exception:  # a handler bug must not stop the server  # noqa: BLE001
                log.exception("%s: handler failed on %s", self.name, excerpt(raw))
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
