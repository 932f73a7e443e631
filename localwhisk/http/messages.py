"""The REST API's request and response records, and the transaction ids of OpenWhisk."""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from typing import Any

from localwhisk.errors import ApiError

_TID_ALPHABET = string.ascii_letters + string.digits
_random = random.SystemRandom()


def transaction_id() -> str:
    """32 random ``[A-Za-z0-9]`` characters (``TransactionId.generateTid``)."""
    return "".join(_random.choices(_TID_ALPHABET, k=32))


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]      # lower-case names
    body: bytes
    request_id: str
    received_ms: int

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, json.dumps(value, separators=(",", ":")).encode(), headers=headers or [])


def error_response(error: ApiError, request_id: str) -> Response:
    return json_response(error.status, {"error": error.text, "code": request_id}, list(error.headers))
