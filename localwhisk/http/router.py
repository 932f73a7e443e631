"""The REST API's routing table: each route's handlers are named functions in :mod:`localwhisk.http.handlers`.

Each handler takes the platform, the request and the path's match groups and returns a
:class:`~localwhisk.http.messages.Response` or raises :class:`~localwhisk.errors.ApiError`.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable

from localwhisk.errors import ROUTE_NOT_FOUND, ApiError
from localwhisk.http import handlers as h
from localwhisk.http.messages import Request, Response, error_response

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
