"""The invoker's side of the runtime protocol: ``POST /init`` and ``POST /run`` on a container.

As OpenWhisk's ``Container.httpConnection``, each container has one HTTP/1.1 connection
(:class:`RuntimeConnection`), opened by its first call and kept for the next: a warm ``/run``
pays no TCP or UNIX-socket connect and no accept in the proxy, which on a busy host are
wake-ups of their own inside the activation's interval (docs/localwhisk.md, "What a warm
activation's duration holds"). It is closed after a failed or timed-out call, when the
container is paused, and when it is destroyed.
"""

from __future__ import annotations

import enum
import http.client
import json
import socket
import time
from dataclasses import dataclass


class CallOutcome(enum.Enum):
    ANSWERED = "answered"
    TIMED_OUT = "timed_out"
    CONNECTION_ERROR = "connection_error"


@dataclass(frozen=True, slots=True)
class RuntimeAnswer:
    outcome: CallOutcome
    status: int = 0
    body: str = ""
    #: epoch ms when the call ended (its answer read, its timeout, its failure): the end of
    #: OpenWhisk's ``Interval`` of the call, before anything parses the answer
    end_ms: int = 0


def _now_ms() -> int:
    return int(time.time() * 1000)


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the UNIX socket of a Docker container's proxy (containers have no network)."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class RuntimeConnection:
    """The kept connection to one container's proxy (``socket_path`` when given, else ``host:port``).

    One call at a time (a container runs one activation at a time); :meth:`close` may come
    from another thread (the pool destroying a busy container), which ends a call in progress
    as a connection error.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", socket_path: str | None = None):
        self.port = port
        self.host = host
        self.socket_path = socket_path
        self._conn: http.client.HTTPConnection | None = None
        self.connections_opened = 0

    def post(self, path: str, payload: dict, timeout_s: float) -> RuntimeAnswer:
        """One request on the kept connection (opened if needed); never raises."""
        data = json.dumps(payload).encode()
        timeout = max(timeout_s, 0.001)
        conn = self._conn
        if conn is None:
            conn = (_UnixConnection(self.socket_path, timeout) if self.socket_path
                    else http.client.HTTPConnection(self.host, self.port, timeout=timeout))
            self._conn = conn
            self.connections_opened += 1
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            # one write for headers and body (http.client joins them when the body is bytes)
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
            end_ms = _now_ms()
            if response.will_close:
                self.close()
            return RuntimeAnswer(CallOutcome.ANSWERED, response.status, raw.decode("utf-8", errors="replace"), end_ms)
        except TimeoutError:
            end_ms = _now_ms()
            self.close()
            return RuntimeAnswer(CallOutcome.TIMED_OUT, end_ms=end_ms)
        except (OSError, http.client.HTTPException):
            end_ms = _now_ms()
            self.close()
            return RuntimeAnswer(CallOutcome.CONNECTION_ERROR, end_ms=end_ms)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

