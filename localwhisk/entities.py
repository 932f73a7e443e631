"""Actions: the entity, its create/update rules (docs/openwhisk-contract.md, Creating and reading
actions) and a persisted store.

Packages are not implemented: an action lives at the namespace root.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import LimitsConfig, RuntimesConfig
from .errors import (
    ALREADY_EXISTS,
    ENTITY_NAME_ILLEGAL,
    EXEC_UNDEFINED,
    ApiError,
    entity_too_big,
    unsupported_runtime,
)

ENTITY_NAME_RE = re.compile(r"\A([\w]|[\w][\w@ .-]{0,254}[\w@.-])\Z")
_BASE64_RE = re.compile(r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)?$")
CONCURRENCY_MAX = 1
#: OpenWhisk's size limits of an action's fields (``Parameters.sizeLimit``, ``Exec.sizeLimit``).
PARAMETERS_MAX_BYTES = 1024 * 1024
EXEC_MAX_BYTES = 48 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ActionLimits:
    timeout_ms: int
    memory_mb: int
    logs_mb: int
    concurrency: int = 1

    def to_json(self) -> dict[str, int]:
        return {"timeout": self.timeout_ms, "memory": self.memory_mb, "logs": self.logs_mb,
                "concurrency": self.concurrency}


@dataclass(frozen=True, slots=True)
class Action:
    namespace: str
    name: str
    version: str
    publish: bool
    kind: str
    code: str
    main: str | None
    binary: bool
    annotations: tuple[tuple[str, Any], ...]
    parameters: tuple[tuple[str, Any], ...]
    limits: ActionLimits
    updated_ms: int

    @property
    def path(self) -> str:
        """The fully qualified name without a leading slash (the ``path`` annotation)."""
        return f"{self.namespace}/{self.name}"

    def annotation(self, key: str, default: Any = None) -> Any:
        return dict(self.annotations).get(key, default)

    def exec_json(self, code: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "binary": self.binary}
        if code:
            out["code"] = self.code
        if self.main:
            out["main"] = self.main
        return out

    def to_json(self, code: bool = True) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "version": self.version,
                "publish": self.publish, "exec": self.exec_json(code),
                "annotations": _kv_json(self.annotations), "parameters": _kv_json(self.parameters),
                "limits": self.limits.to_json(), "updated": self.updated_ms}

    def summary_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "version": self.version,
                "publish": self.publish, "annotations": _kv_json(self.annotations),
                "limits": self.limits.to_json(), "exec": {"binary": self.binary}, "updated": self.updated_ms}


def _kv_json(pairs: tuple[tuple[str, Any], ...]) -> list[dict[str, Any]]:
    return [{"key": k, "value": v} for k, v in pairs]


def check_entity_name(name: str) -> None:
    if not ENTITY_NAME_RE.match(name):
        raise ApiError(400, ENTITY_NAME_ILLEGAL)


def is_binary_code(code: str) -> bool:
    """OpenWhisk's ``Exec.isBinaryCode``: trimmed code that is valid padded base64."""
    text = code.strip()
    return len(text) > 0 and len(text) % 4 == 0 and _BASE64_RE.match(text) is not None


# --------------------------------------------------------------------------- create / update

def check_entity_sizes(body: dict[str, Any]) -> None:
    """413 when ``exec``, ``parameters`` or ``annotations`` of a ``PUT`` is over OpenWhisk's limit.

    Sizes as OpenWhisk counts them: the code and entry point bytes; for parameters and
    annotations, each key's bytes plus the bytes of its value's compact JSON.
    """
    exec_body = body.get("exec")
    if isinstance(exec_body, dict) and isinstance(exec_body.get("code"), str):
        main = exec_body.get("main")
        size = _utf8_size(exec_body["code"]) + (_utf8_size(main) if isinstance(main, str) else 0)
        if size > EXEC_MAX_BYTES:
            raise ApiError(413, entity_too_big("exec", size, EXEC_MAX_BYTES))
    for field in ("parameters", "annotations"):
        pairs = body.get(field)
        if not isinstance(pairs, list):
            continue
        size = sum(_utf8_size(p["key"]) + _utf8_size(json.dumps(p.get("value"), ensure_ascii=False,
                                                                 separators=(",", ":")))
                   for p in pairs if isinstance(p, dict) and isinstance(p.get("key"), str))
        if size > PARAMETERS_MAX_BYTES:
            raise ApiError(413, entity_too_big(field, size, PARAMETERS_MAX_BYTES))


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def build_action(namespace: str, name: str, body: dict[str, Any], existing: Action | None, *,
                 overwrite: bool, limits: LimitsConfig, runtimes: RuntimesConfig, now_ms: int) -> Action:
    """The action a ``PUT`` creates or updates; raises :class:`ApiError` (400/409)."""
    check_entity_name(name)
    if existing is not None and not overwrite:
        raise ApiError(409, ALREADY_EXISTS)
    exec_body = body.get("exec")
    if existing is None and not exec_body:
        raise ApiError(400, EXEC_UNDEFINED)
    if exec_body is not None and not isinstance(exec_body, dict):
        raise ApiError(400, "The request content was malformed:\nexec must be an object")
    kind, code, main = _exec_fields(exec_body, existing, runtimes)
    new_limits = _limits(body.get("limits"), existing, limits)
    annotations = dict(existing.annotations) if existing else {}
    annotations.update(_kv(body.get("annotations"), "annotations"))
    for key in body.get("delAnnotations") or []:
        annotations.pop(key, None)
    annotations["exec"] = kind
    annotations.setdefault("provide-api-key", False)
    parameters = (_kv(body.get("parameters"), "parameters") if "parameters" in body
                  else dict(existing.parameters) if existing else {})
    version = body.get("version") or (_up_patch(existing.version) if existing else "0.0.1")
    publish = bool(body.get("publish", existing.publish if existing else False))
    return Action(namespace=namespace, name=name, version=str(version), publish=publish, kind=kind,
                  code=code, main=main, binary=is_binary_code(code), annotations=tuple(annotations.items()),
                  parameters=tuple(parameters.items()), limits=new_limits, updated_ms=now_ms)


def _exec_fields(exec_body: dict | None, existing: Action | None,
                 runtimes: RuntimesConfig) -> tuple[str, str, str | None]:
    if not exec_body:
        if existing is None:  # build_action refuses this first
            raise ApiError(400, EXEC_UNDEFINED)
        return existing.kind, existing.code, existing.main
    kind = exec_body.get("kind")
    if kind == "python:default":
        kind = runtimes.python_default
    if kind not in runtimes.python_kinds:
        raise ApiError(400, unsupported_runtime(str(kind), runtimes.python_kinds + ["python:default"]))
    code = exec_body.get("code")
    if not isinstance(code, str):
        raise ApiError(400, "The request content was malformed:\nexec malformed, code must be a string")
    main = exec_body.get("main")
    return kind, code, main if isinstance(main, str) and main else None


def _kv(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, list) or not all(isinstance(p, dict) and isinstance(p.get("key"), str) for p in value):
        raise ApiError(400, f"The request content was malformed:\n{field} must be a list of {{key, value}}")
    return {p["key"]: p.get("value") for p in value}


def _limits(body: Any, existing: Action | None, cfg: LimitsConfig) -> ActionLimits:
    base = existing.limits if existing else ActionLimits(cfg.std_action_duration_ms, cfg.std_action_memory_mb,
                                                         cfg.max_action_logs_mb, 1)
    if body is None:
        return base
    if not isinstance(body, dict):
        raise ApiError(400, "The request content was malformed:\nlimits must be an object")
    values = {}
    for key in ("timeout", "memory", "logs", "concurrency"):
        if key in body and body[key] is not None:
            value = body[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise ApiError(400, f"The request content was malformed:\n{key} limit must be whole number")
            values[key] = int(value)
    checks = [("memory", "memory size {} MB", cfg.min_action_memory_mb, cfg.max_action_memory_mb, "{} MB"),
              ("timeout", "duration {} milliseconds", cfg.min_action_duration_ms, cfg.max_action_duration_ms,
               "{} milliseconds"),
              ("logs", "log size {} MB", 0, cfg.max_action_logs_mb, "{} MB"),
              ("concurrency", "concurrency {}", 1, CONCURRENCY_MAX, "{}")]
    for key, what, low, high, unit in checks:
        if key in values:
            value = values[key]
            if value > high:
                raise ApiError(400, f"{what.format(value)} exceeds allowed threshold of {unit.format(high)}")
            if value < low:
                raise ApiError(400, f"{what.format(value)} below allowed threshold of {unit.format(low)}")
    return ActionLimits(values.get("timeout", base.timeout_ms), values.get("memory", base.memory_mb),
                        values.get("logs", base.logs_mb), values.get("concurrency", base.concurrency))


def _up_patch(version: str) -> str:
    parts = version.split(".")
    try:
        major, minor, patch = (int(p) for p in parts)
    except ValueError:
        return "0.0.1"
    return f"{major}.{minor}.{patch + 1}"


# --------------------------------------------------------------------------- store

class ActionStore:
    """Actions by ``(namespace, name)``, persisted to ``actions.json`` on every change."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "actions.json"
        self._lock = threading.Lock()
        self._actions: dict[tuple[str, str], Action] = {}
        if self.path.exists():
            for item in json.loads(self.path.read_text(encoding="utf-8")):
                action = _from_stored(item)
                self._actions[(action.namespace, action.name)] = action

    def get(self, namespace: str, name: str) -> Action | None:
        return self._actions.get((namespace, name))

    def put(self, action: Action) -> None:
        with self._lock:
            self._actions[(action.namespace, action.name)] = action
            self._save()

    def delete(self, namespace: str, name: str) -> Action | None:
        with self._lock:
            action = self._actions.pop((namespace, name), None)
            if action is not None:
                self._save()
            return action

    def list(self, namespace: str) -> list[Action]:
        """The namespace's actions, most recently updated first."""
        actions = [a for (ns, _), a in list(self._actions.items()) if ns == namespace]
        return sorted(actions, key=lambda a: a.updated_ms, reverse=True)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = [dataclasses.asdict(a) for a in self._actions.values()]
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.path)


def _from_stored(item: dict[str, Any]) -> Action:
    item = dict(item)
    item["limits"] = ActionLimits(**item["limits"])
    item["annotations"] = tuple(tuple(p) for p in item["annotations"])
    item["parameters"] = tuple(tuple(p) for p in item["parameters"])
    return Action(**item)
