"""The REST API: the routing table and the request/response types (CONTRACT.md §1-§6).

Handlers are named functions in :data:`ROUTES` (``localwhisk.handlers``); each takes the
platform, the request and the path's match groups and returns a :class:`Response` or
raises :class:`~localwhisk.errors.ApiError`.
"""

from __future__ import annotations

import json
import random
import re
import string
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

from . import handlers as h
from .errors import ROUTE_NOT_FOUND, ApiError

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


_NS = r"(?P<ns>[^/]+)"
_NAME = r"(?P<name>[^/]+(?:/[^/]+)?)"

#: (path pattern, {method: handler}); the first matching pattern wins.
ROUTES: list[tuple[re.Pattern, dict[str, Callable]]] = [(re.compile(p + r"\Z"), m) for p, m in [
    (r"/", {"GET": h.get_info}),
    (r"/ping", {"GET": h.get_ping}),
    (r"/api/v1", {"GET": h.get_api_info}),
    (r"/api/v1/namespaces", {"GET": h.list_namespaces}),
    (rf"/api/v1/namespaces/{_NS}/limits", {"GET": h.get_limits}),
    (rf"/api/v1/namespaces/{_NS}/actions", {"GET": h.list_actions}),
    (rf"/api/v1/namespaces/{_NS}/actions/{_NAME}",
     {"GET": h.get_action, "PUT": h.put_action, "DELETE": h.delete_action, "POST": h.invoke_action}),
    (rf"/api/v1/namespaces/{_NS}/activations", {"GET": h.list_activations}),
    (rf"/api/v1/namespaces/{_NS}/activations/(?P<id>[^/]+)", {"GET": h.get_activation}),
    (rf"/api/v1/namespaces/{_NS}/activations/(?P<id>[^/]+)/result", {"GET": h.get_activation_result}),
    (rf"/api/v1/namespaces/{_NS}/activations/(?P<id>[^/]+)/logs", {"GET": h.get_activation_logs}),
]]


def dispatch(platform, request: Request) -> Response:
    """Route one request; every response carries ``X-Request-ID``."""
    try:
        response = _route(platform, request)
    except ApiError as error:
        response = error_response(error, request.request_id)
    response.headers.append(("X-Request-ID", request.request_id))
    return response


def _route(platform, request: Request) -> Response:
    path = request.path if request.path == "/" else request.path.rstrip("/")
    for pattern, methods in ROUTES:
        match = pattern.match(path)
        if match is None:
            continue
        handler = methods.get(request.method)
        if handler is None:
            allowed = ", ".join(methods)
            raise ApiError(405, f"HTTP method not allowed, supported methods: {allowed}", (("Allow", allowed),))
        groups = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
        return handler(platform, request, **groups)
    raise ApiError(404, ROUTE_NOT_FOUND)
