"""The invoker's side of the runtime protocol: ``POST /init`` and ``POST /run`` on a container."""

from __future__ import annotations

import enum
import http.client
import json
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


def post(port: int, path: str, payload: dict, timeout_s: float, host: str = "127.0.0.1") -> RuntimeAnswer:
    """One request on a fresh connection; never raises."""
    data = json.dumps(payload).encode()
    conn = http.client.HTTPConnection(host, port, timeout=max(timeout_s, 0.001))
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
