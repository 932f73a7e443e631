"""The REST API's routing table: each route's handlers are named functions in :mod:`localwhisk.http.handlers`.

Each handler takes the platform, the request and the path's match groups and returns a
:class:`~localwhisk.http.messages.Response` or raises :class:`~localwhisk.errors.ApiError`.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable

from localwhisk.errors import ROUTE_NOT_FOUND, ApiError, feature_not_implemented
from localwhisk.http import handlers as h
from localwhisk.http.messages import Request, Response, error_response

_NS = r"(?P<ns>[^/]+)"
_NAME = r"(?P<name>[^/]+(?:/[^/]+)?)"

#: (path pattern, {method: handler}); the first matching pattern wins.
_TABLE: list[tuple[str, dict[str, Callable[..., Response]]]] = [
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
]
ROUTES: list[tuple[re.Pattern, dict[str, Callable[..., Response]]]] = [(re.compile(p + r"\Z"), m) for p, m in _TABLE]

#: OpenWhisk routes localwhisk does not implement: every method answers 501 naming the feature
#: (creates included), rather than a 404 that reads as "this entity does not exist".
UNIMPLEMENTED: list[tuple[re.Pattern, str]] = [(re.compile(p + r"(?:/.*)?\Z", re.DOTALL), f) for p, f in [
    (rf"/api/v1/namespaces/{_NS}/triggers", "Triggers"),
    (rf"/api/v1/namespaces/{_NS}/rules", "Rules"),
    (rf"/api/v1/namespaces/{_NS}/packages", "Packages"),
    (r"/api/v1/web", "Web actions"),
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
        if handler is None and request.method == "HEAD":
            handler = methods.get("GET")  # the server sends the head of the GET's answer
        if handler is None:
            allowed = ", ".join(methods)
            raise ApiError(405, f"HTTP method not allowed, supported methods: {allowed}", (("Allow", allowed),))
        groups = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
        return handler(platform, request, **groups)
    for pattern, feature in UNIMPLEMENTED:
        if pattern.match(path):
            raise ApiError(501, feature_not_implemented(feature))
    raise ApiError(404, ROUTE_NOT_FOUND)
