"""Typed, validated YAML configuration.

A configuration schema is a tree of frozen dataclasses whose fields are declared
with :func:`option` (a leaf key) or :func:`section` (a nested mapping).  The YAML
file is parsed once, at the edge, into that tree:

* an unknown key, a wrong type or a value out of range raises
  :class:`ConfigError`, whose message names the file and the key path
  (``config/loader.yml: injection:workers: expected an integer, got 'ten'``);
* a key left out takes its default; a key declared ``required=True`` and left
  out is reported missing;
* a float must be finite (no ``.nan``, ``.inf``); a duration in seconds (``unit="s"``)
  is at most :data:`MAX_DURATION_S` unless its option says otherwise; an option's
  ``check`` refuses what its type allows but its meaning does not (a malformed URL);
* values of fields typed :class:`pathlib.Path` expand ``~`` and ``$VARS`` (an unset variable
  is an error naming the key).

The same schema renders the reference table of ``docs/configuration.md``
(:func:`render_table`), and a test checks the document against it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

_MISSING = dataclasses.MISSING
#: The longest duration in seconds an option takes by default: beyond, a value is a typo (and
#: would overflow the timeouts of sleeps and sockets, at ~292 years).
MAX_DURATION_S = 366 * 24 * 3600


class ConfigError(ValueError):
    """A configuration problem, naming the file and the key path."""

    def __init__(self, source: str, key: str, message: str):
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


class InvalidValue(ValueError):
    """Raised by an option's ``check``: the message, and the key below the option it is about (if any)."""

    def __init__(self, message: str, subkey: str = ""):
        super().__init__(message)
        self.message, self.subkey = message, subkey


def option(default: Any = _MISSING, *, doc: str, unit: str = "", required: bool = False,
           minimum: float | None = None, exclusive_minimum: float | None = None,
           maximum: float | None = None, check: Callable[[Any], None] | None = None) -> Any:
    """Declare a leaf key with its default, unit and meaning.

    Mutable defaults (lists, dicts) are copied for every instance.  A duration (``unit="s"``)
    gets ``maximum=MAX_DURATION_S`` unless given one.  ``check(value)`` raises
    :class:`InvalidValue` for a value its type allows but its meaning does not.
    """
    if unit == "s" and maximum is None:
        maximum = MAX_DURATION_S
    metadata = {"doc": doc, "unit": unit, "required": required, "minimum": minimum,
                "exclusive_minimum": exclusive_minimum, "maximum": maximum, "check": check}
    if required:
        return dataclasses.field(default=None, metadata=metadata)
    if isinstance(default, (list, dict)):
        frozen_default = default
        return dataclasses.field(default_factory=lambda: _copy(frozen_default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def section(cls: type, *, doc: str) -> Any:
    """Declare a nested mapping parsed into the dataclass ``cls``."""
    return dataclasses.field(default_factory=cls, metadata={"doc": doc, "section": True})


def field_default(field: dataclasses.Field) -> Any:
    """The default of a field declared with :func:`option` or :func:`section`."""
    if field.default is not _MISSING:
        return field.default
    if field.default_factory is _MISSING:
        raise TypeError(f"configuration field {field.name!r} has no default (declare it with option())")
    return field.default_factory()


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


_UNSET_VARIABLE = re.compile(r"\$(\w+|\{\w+\})")


def expand_path(value: str) -> Path:
    """Expand ``~`` and environment variables in a path; raise ``ValueError`` naming an unset one."""
    expanded = os.path.expandvars(os.path.expanduser(value))
    unset = _UNSET_VARIABLE.search(expanded)
    if unset:
        raise ValueError(f"environment variable {unset.group(1).strip('{}')} is not set (in {value!r})")
    return Path(expanded)


# --------------------------------------------------------------------------- parsing

def load_file(schema: type, path: str | os.PathLike, *, overrides: Mapping[str, Any] | None = None) -> Any:
    """Read a YAML file and parse it into ``schema``.

    An empty file gives all defaults.  ``overrides`` maps ``a:b:c`` key paths to
    values applied on top of the file (command-line flags), validated the same way.
    """
    source = str(path)
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        raise ConfigError(source, "", f"invalid YAML at {where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    for keypath, value in (overrides or {}).items():
        data = _set_path(data, keypath.split(":"), value)
    return parse(schema, data, source)


def parse(schema: type, data: Any, source: str, prefix: str = "") -> Any:
    """Parse a mapping into the dataclass ``schema`` (see module doc)."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, prefix, f"expected a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in data:
        if key not in fields:
            raise ConfigError(source, _join(prefix, str(key)),
                              f"unknown key (known keys: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(schema)
    values = {}
    for name, field in fields.items():
        keypath = _join(prefix, name)
        if name in data:
            raw = data[name]
            if field.metadata.get("section"):
                values[name] = parse(hints[name], {} if raw is None else raw, source, keypath)
            else:
                values[name] = _convert(hints[name], raw, source, keypath)
                _check_range(field.metadata, values[name], source, keypath)
                _check_meaning(field.metadata, values[name], source, keypath)
        elif field.metadata.get("required"):
            raise ConfigError(source, keypath, "missing required key")
        elif not field.metadata.get("section"):
            default = field_default(field)
            if default is not None:  # defaults go through the same conversion (paths expand)
                values[name] = _convert(hints[name], default, "<defaults>", keypath)
        else:
            values[name] = parse(hints[name], {}, source, keypath)
    return schema(**values)


def defaults(schema: type) -> Any:
    """The schema with every key at its default, converted as if read from a file."""
    return parse(schema, {}, "<defaults>")


def _set_path(data: Any, keys: list[str], value: Any) -> dict:
    data = dict(data) if isinstance(data, Mapping) else {}
    head, rest = keys[0], keys[1:]
    data[head] = _set_path(data.get(head), rest, value) if rest else value
    return data


def _join(prefix: str, key: str) -> str:
    return f"{prefix}:{key}" if prefix else key


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(hint: Any, raw: Any, source: str, keypath: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], raw, source, keypath)
        errors = []
        for candidate in inner:
            try:
                return _convert(candidate, raw, source, keypath)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(source, keypath, " or ".join(errors))
    if hint is Any:
        return raw
    if origin is Literal:
        if raw not in args:
            raise ConfigError(source, keypath, f"expected one of {', '.join(map(repr, args))}, got {_show(raw)}")
        return raw
    if origin is list:
        if not isinstance(raw, list):
            raise ConfigError(source, keypath, f"expected a list, got {_show(raw)}")
        return [_convert(args[0], item, source, f"{keypath}[{i}]") for i, item in enumerate(raw)]
    if origin is dict:
        if not isinstance(raw, Mapping):
            raise ConfigError(source, keypath, f"expected a mapping, got {_show(raw)}")
        return {str(k): _convert(args[1], v, source, _join(keypath, str(k))) for k, v in raw.items()}
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(source, keypath, f"expected true or false, got {_show(raw)}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(source, keypath, f"expected an integer, got {_show(raw)}")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(source, keypath, f"expected a number, got {_show(raw)}")
        if not math.isfinite(raw):
            raise ConfigError(source, keypath, f"expected a finite number, got {raw}")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(source, keypath, f"expected a string, got {_show(raw)}")
        return raw
    if hint is Path:
        if not isinstance(raw, str) or not raw:
            raise ConfigError(source, keypath, f"expected a path, got {_show(raw)}")
        try:
            return expand_path(raw)
        except ValueError as exc:
            raise ConfigError(source, keypath, str(exc)) from None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return parse(hint, raw, source, keypath)
    raise TypeError(f"unsupported configuration type {hint!r} at {keypath}")


def _check_range(meta: Mapping[str, Any], value: Any, source: str, keypath: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise ConfigError(source, keypath, f"must be >= {meta['minimum']}, got {value}")
    if meta.get("exclusive_minimum") is not None and value <= meta["exclusive_minimum"]:
        raise ConfigError(source, keypath, f"must be > {meta['exclusive_minimum']}, got {value}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        days = f" ({meta['maximum'] // 86400} days)" if meta["maximum"] == MAX_DURATION_S else ""
        raise ConfigError(source, keypath, f"must be <= {meta['maximum']}{days}, got {value}")


def _check_meaning(meta: Mapping[str, Any], value: Any, source: str, keypath: str) -> None:
    check = meta.get("check")
    if check is None or value is None:
        return
    try:
        check(value)
    except InvalidValue as exc:
        raise ConfigError(source, _join(keypath, exc.subkey) if exc.subkey else keypath, exc.message) from None


def check_http_url(value: str) -> None:
    """An ``option`` check: ``http(s)://host[:port][/path]``, nothing else."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        if "port" not in str(exc).lower():
            raise InvalidValue(f"not a URL ({exc}): {_show(value)}") from None
        netloc = urlsplit(value).netloc
        raise InvalidValue(f"port {netloc.rpartition(':')[2]!r} is not a number from 1 to 65535") from None
    if parts.scheme not in ("http", "https") or not value.startswith(f"{parts.scheme}://"):
        raise InvalidValue(f"expected an http:// or https:// URL (scheme://host[:port]), got {_show(value)}")
    if not parts.hostname:
        raise InvalidValue(f"no host in {_show(value)}")
    if port == 0:
        raise InvalidValue(f"port {port} is not a number from 1 to 65535")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise InvalidValue("a query or fragment has no place in an API host URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidValue("credentials have no place in an API host URL (the users' keys are in openwhisk:authkeys)")


# --------------------------------------------------------------------------- documentation

def iter_keys(schema: type, prefix: str = ""):
    """Yield ``(keypath, type text, default text, unit, doc)`` for every leaf key."""
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        keypath = _join(prefix, field.name)
        if field.metadata.get("section"):
            yield from iter_keys(hints[field.name], keypath)
            continue
        meta = field.metadata
        if meta.get("required"):
            default = "(required)"
        else:
            default = _yaml_text(field_default(field))
        yield keypath, _type_text(hints[field.name]), default, meta.get("unit", ""), meta["doc"]


def render_table(schema: type) -> str:
    """The Markdown reference table of a schema, one row per leaf key."""
    lines = ["| key | type | default | unit | meaning |", "|---|---|---|---|---|"]
    for keypath, type_text, default, unit, doc in iter_keys(schema):
        cells = [f"`{keypath}`", type_text, f"`{default}`", unit or "-", doc]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _yaml_text(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _type_text(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(a) for a in args)
    if origin is Literal:
        return " / ".join(repr(a) for a in args)
    if origin is list:
        return f"list of {_type_text(args[0])}"
    if origin is dict:
        return f"mapping of {_type_text(args[1])}"
    names = {bool: "bool", int: "int", float: "float", str: "string", Path: "path",
             type(None): "null", Any: "mapping"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
