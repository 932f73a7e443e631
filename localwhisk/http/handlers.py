"""Request handlers of the REST API (routed by :mod:`localwhisk.http.router`), one named function each."""

from __future__ import annotations

import json
import re
from typing import Any

from localwhisk import errors
from localwhisk.activations import ACTIVATION_ID_RE, StatusCode
from localwhisk.auth import REALM_HEADER, AuthStatus, authenticate
from localwhisk.entities import build_action, check_entity_name, check_entity_sizes
from localwhisk.errors import ApiError
from localwhisk.http import messages
from localwhisk.invoker import now_ms
from localwhisk.users import Identity

LIST_MAX = 200
LIST_DEFAULT = 30
_NAME_FILTER_RE = re.compile(r"\A[^/]+(/[^/]+)?\Z")


# --------------------------------------------------------------------------- helpers

def _json(status: int, value: Any, headers=None):
    return messages.json_response(status, value, headers)


def identify(platform, request) -> Identity:
    result = authenticate(request.header("Authorization"), platform.users)
    if result.status is not AuthStatus.OK or result.identity is None:
        raise ApiError(401, result.error_text, (REALM_HEADER,))
    return result.identity


def authorize(platform, request, ns: str, resource: str) -> Identity:
    """The caller's identity when ``ns`` is ``_`` or its own namespace; 401/403 otherwise."""
    identity = identify(platform, request)
    if ns not in ("_", identity.namespace):
        raise ApiError(403, errors.not_authorized_to_access(f"{ns}/{resource}"))
    return identity


def query_bool(request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "yes", "on"):
        return True
    if value.lower() in ("false", "no", "off"):
        return False
    raise ApiError(400, f"The query parameter '{name}' was malformed:\n'{value}' is not a valid Boolean value")


def query_int(request, name: str, collection: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, errors.argument_not_integer(collection, value)) from None


def list_window(request, collection: str) -> tuple[int, int]:
    """``(skip, limit)`` with OpenWhisk's rules (limit 0..200, 0 means 200; skip >= 0)."""
    limit = query_int(request, "limit", collection)
    skip = query_int(request, "skip", collection)
    if limit is None:
        limit = LIST_DEFAULT
    elif not 0 <= limit <= LIST_MAX:
        raise ApiError(400, errors.list_limit_out_of_range(collection, limit, LIST_MAX))
    elif limit == 0:
        limit = LIST_MAX
    if skip is None:
        skip = 0
    elif skip < 0:
        raise ApiError(400, errors.list_skip_out_of_range(collection, skip))
    return skip, limit


def request_object(request) -> dict:
    """The JSON object body; an empty body is ``{}``."""
    if not request.body.strip():
        return {}
    try:
        value = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The request content was malformed:\n{exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "The request content was malformed:\nObject expected")
    return value


def _package_free(name: str) -> str:
    """Packages are not implemented: ``pkg/name`` never exists."""
    if "/" in name:
        raise ApiError(404, errors.RESOURCE_DOES_NOT_EXIST)
    return name


# --------------------------------------------------------------------------- no authentication

def get_info(platform, request):
    cfg = platform.config
    lim = cfg.limits
    mb = 1024 * 1024
    limits = {"actions_per_minute": lim.actions_per_minute, "triggers_per_minute": 60,
              "concurrent_actions": lim.concurrent_actions, "sequence_length": 50,
              "min_action_duration": lim.min_action_duration_ms, "max_action_duration": lim.max_action_duration_ms,
              "min_action_memory": lim.min_action_memory_mb * mb, "max_action_memory": lim.max_action_memory_mb * mb,
              "min_action_logs": 0, "max_action_logs": lim.max_action_logs_mb * mb}
    limits.update({f"default_{k}": v for k, v in list(limits.items()) if k.startswith(("min_", "max_"))})
    runtimes = {"python": [{"kind": kind, "image": f"openwhisk/action-python-v{kind.split(':')[1]}:nightly",
                            "deprecated": False, "default": kind == cfg.runtimes.python_default,
                            "attached": False, "requireMain": False} for kind in cfg.runtimes.python_kinds]}
    return _json(200, {"description": "OpenWhisk (localwhisk, a single-host stand-in)",
                       "support": {"github": "https://github.com/apache/openwhisk/issues"},
                       "api_paths": ["/api/v1"], "limits": limits, "runtimes": runtimes})


def get_ping(platform, request):
    return messages.Response(200, b"pong", content_type="text/plain; charset=UTF-8")


def get_api_info(platform, request):
    return _json(200, {"description": "OpenWhisk API", "api_version": "1.0.0", "api_version_path": "v1",
                       "build": "localwhisk", "buildno": "localwhisk",
                       "swagger_paths": {"ui": "/docs", "api-docs": "/api-docs"}})


# --------------------------------------------------------------------------- namespaces

def list_namespaces(platform, request):
    return _json(200, [identify(platform, request).namespace])


def get_limits(platform, request, ns):
    identity = authorize(platform, request, ns, "limits")
    per_minute, concurrent = platform.limits_for(identity)
    return _json(200, {"invocationsPerMinute": per_minute, "concurrentInvocations": concurrent,
                       "firesPerMinute": 60})


# --------------------------------------------------------------------------- actions

def list_actions(platform, request, ns):
    identity = authorize(platform, request, ns, "actions")
    skip, limit = list_window(request, "actions")
    actions = platform.actions.list(identity.namespace)
    if query_bool(request, "count", False):
        return _json(200, {"actions": len(actions)})
    return _json(200, [a.summary_json() for a in actions[skip:skip + limit]])


def get_action(platform, request, ns, name):
    identity = authorize(platform, request, ns, name)
    action = platform.actions.get(identity.namespace, _package_free(name))
    if action is None:
        raise ApiError(404, errors.RESOURCE_DOES_NOT_EXIST)
    return _json(200, action.to_json(code=query_bool(request, "code", True)))


def put_action(platform, request, ns, name):
    identity = authorize(platform, request, ns, name)
    if "/" in name:
        raise ApiError(404, errors.RESOURCE_DOES_NOT_EXIST)  # the package does not exist
    check_entity_name(name)
    overwrite = query_bool(request, "overwrite", False)
    body = request_object(request)
    check_entity_sizes(body)
    existing = platform.actions.get(identity.namespace, name)
    action = build_action(identity.namespace, name, body, existing, overwrite=overwrite,
                          limits=platform.config.limits, runtimes=platform.config.runtimes, now_ms=now_ms())
    platform.actions.put(action)
    return _json(200, action.to_json())


def delete_action(platform, request, ns, name):
    identity = authorize(platform, request, ns, name)
    action = platform.actions.delete(identity.namespace, _package_free(name))
    if action is None:
        raise ApiError(404, errors.RESOURCE_DOES_NOT_EXIST)
    return _json(200, action.to_json())


def invoke_action(platform, request, ns, name):
    identity = authorize(platform, request, ns, name)
    platform.admit(identity)  # entitlement (429) comes before the action is looked up
    try:
        limit = platform.config.limits.max_payload_bytes
        if len(request.body) > limit:  # OpenWhisk checks the size before it reads the payload
            raise ApiError(413, errors.entity_too_big("Request", len(request.body), limit))
        blocking = query_bool(request, "blocking", False)
        result_only = query_bool(request, "result", False)
        wait_ms = _blocking_timeout(request, platform.config.limits.max_blocking_wait_ms)
        params = request_object(request)
        action = platform.actions.get(identity.namespace, _package_free(name))
        if action is None:
            raise ApiError(404, errors.RESOURCE_DOES_NOT_EXIST)
        if _overrides_final(action, params):
            raise ApiError(400, errors.PARAMETERS_NOT_ALLOWED)
    except ApiError:
        platform.release_admission(identity)
        raise
    activation_id = platform.invoke(identity, action, params, request.request_id, request.received_ms)
    header = [("x-openwhisk-activation-id", activation_id)]
    if not blocking:
        return _json(202, {"activationId": activation_id}, header)
    record = platform.activations.wait_for(activation_id, wait_ms / 1000)
    if record is None:
        return _json(202, {"activationId": activation_id}, header)
    code = record.response.status_code
    status = 200 if code is StatusCode.SUCCESS else 500 if code is StatusCode.WHISK_ERROR else 502
    result = record.response.result
    if isinstance(result, list) or result_only:
        return _json(status, result, header)
    return _json(status, record.to_json(), header)


def _blocking_timeout(request, max_ms: int) -> int:
    value = request.query.get("timeout")
    if value is None:
        return max_ms
    try:
        wait_ms = int(value)
    except ValueError:
        wait_ms = 0
    if not 0 < wait_ms <= max_ms:
        raise ApiError(400, errors.invalid_timeout(max_ms))
    return wait_ms


def _overrides_final(action, params: dict) -> bool:
    final = action.annotation("final")
    if final is not True and str(final).lower() != "true":
        return False
    defined = {k for k, v in action.parameters if v is not None}
    return bool(defined & set(params))


# --------------------------------------------------------------------------- activations

def list_activations(platform, request, ns):
    identity = authorize(platform, request, ns, "activations")
    skip, limit = list_window(request, "activations")
    docs = query_bool(request, "docs", False)
    count = query_bool(request, "count", False)
    if docs and count:
        raise ApiError(400, errors.DOCS_WITH_COUNT)
    since, upto = (_epoch(request, "since"), _epoch(request, "upto"))
    name = request.query.get("name")
    if name is not None and not _NAME_FILTER_RE.match(name):
        raise ApiError(400, errors.bad_name_filter(name))
    records = platform.activations.query(identity.namespace, name=name.split("/")[-1] if name else None,
                                         since_ms=since, upto_ms=upto)
    if count:
        return _json(200, {"activations": len(records)})
    page = records[skip:skip + limit]
    return _json(200, [r.to_json() if docs else r.summary_json() for r in page])


def _epoch(request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, errors.bad_epoch(value)) from None


def _record(platform, request, ns, activation_id):
    identity = authorize(platform, request, ns, activation_id)
    if not ACTIVATION_ID_RE.match(activation_id):
        raise ApiError(400, errors.ACTIVATION_ID_ILLEGAL)
    record = platform.activations.get(activation_id)
    if record is None or record.namespace != identity.namespace:
        raise ApiError(404, errors.RESOURCE_DOES_NOT_EXIST)
    return record


def get_activation(platform, request, ns, id):  # noqa: A002 (the route's group name)
    return _json(200, _record(platform, request, ns, id).to_json())


def get_activation_result(platform, request, ns, id):  # noqa: A002
    return _json(200, _record(platform, request, ns, id).response.to_json())


def get_activation_logs(platform, request, ns, id):  # noqa: A002
    return _json(200, {"logs": list(_record(platform, request, ns, id).logs)})
