"""The invoker's side of the runtime protocol: ``POST /init`` and ``POST /run`` on a container."""

from __future__ import annotations

import enum
import http.client
import json
import socket
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


def post(port: int, path: str, payload: dict, timeout_s: float, host: str = "127.0.0.1",
         socket_path: str | None = None) -> RuntimeAnswer:
    """One request on a fresh connection (to ``socket_path`` when given, else ``host:port``); never raises."""
    data = json.dumps(payload).encode()
    timeout = max(timeout_s, 0.001)
    conn = (_UnixConnection(socket_path, timeout) if socket_path
            else http.client.HTTPConnection(host, port, timeout=timeout))
    try:
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read().decode("utf-8", errors="replace")
        return RuntimeAnswer(CallOutcome.ANSWERED, response.status, body)
    except TimeoutError:
        return RuntimeAnswer(CallOutcome.TIMED_OUT)
    except (OSError, http.client.HTTPException):
        return RuntimeAnswer(CallOutcome.CONNECTION_ERROR)
    finally:
        conn.close()
