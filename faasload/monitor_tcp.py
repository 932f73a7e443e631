"""The measurement protocol over TCP (docs/monitor.md, Measurement over TCP): a token line, then the query.

Over TCP, a client sends ``{"token": "<shared token>"}`` and a newline, then the query of the
measurement socket (:mod:`faasload.monitor_protocol`), then half-closes.  The monitor answers
only when the token matches; otherwise it closes the connection without a byte.  No I/O here.
"""

from __future__ import annotations

import hmac
import json

#: The longest token line accepted.
MAX_AUTH_BYTES = 1024


def encode_auth(token: str) -> bytes:
    """The line that opens a TCP connection to a monitor."""
    return json.dumps({"token": token}).encode() + b"\n"


def split_auth(raw: bytes) -> tuple[str | None, bytes]:
    """(the token of the first line, or None when it is not a token line; the rest of the bytes)."""
    line, newline, rest = raw.partition(b"\n")
    if not newline or len(line) > MAX_AUTH_BYTES:
        return None, b""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        return None, b""
    if not isinstance(message, dict) or set(message) != {"token"} or not isinstance(message["token"], str):
        return None, b""
    return message["token"], rest


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (the time taken says nothing of how much of the token was right)."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def parse_host_port(text: str, *, any_port: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → (host, port); ValueError saying what is wrong.
    ``any_port``: port 0 (a listener's "any free port") is allowed."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not (0 if any_port else 1) <= int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. 10.0.0.2:9300), got {text!r}")
    return host, int(port)
