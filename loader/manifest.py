"""The wskdeploy-manifest helper: manifest actions → rows of the ``functions`` table.

As in the original FaaSLoad README::

    from loader import DatabaseConfiguration, functions
    functions.load_to_database(functions.read_functions('manifest.yml'), db_cfg)

or ``python -m loader.functions MANIFEST [--config loader.yml]``.

A manifest is wskdeploy's (``project:`` wrapper or top-level ``packages:``); each
action becomes one :class:`~loader.storage.rows.FunctionRow`.  FaaSLoad reads two
annotations: ``input_kind`` (image, audio or video) and ``parameters``, a list of
specs ``{name, range_int: [min, max]}``, ``{name, range_float: [min, max]}`` or
``{name, ensemble: [values]}`` (see docs/generator.md).  Anything invalid raises
:class:`ManifestError` naming the file, the action and the key.
"""

from __future__ import annotations

import argparse
import enum
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from faasload.config import ConfigError
from loader.storage.database import DatabaseConfiguration
from loader.storage.rows import FunctionRow

#: Parameters FaaSLoad itself passes to every action (docs/actions.md).
STORAGE_PARAMETERS = ("incont", "object", "outcont")
INPUT_KINDS = ("image", "audio", "video")
#: Limits wskdeploy parses: the three it sends to the platform, and ``concurrentActivations``, which
#: wskdeploy does not send but FaaSLoad sends as the per-container ``concurrency`` limit; the other
#: limits wskdeploy parses are accepted and ignored (docs/openwhisk-contract.md, wskdeploy manifests).
_LIMITS = {"memorySize": ("memory_mb", 1), "timeout": ("timeout_ms", 1), "logSize": ("log_size_mb", 0),
           "concurrentActivations": ("concurrency", 1)}
_IGNORED_LIMITS = ("userInvocationRate", "codeSize", "parameterSize")


class ManifestError(ConfigError):
    """An invalid manifest; the message names the file and the key path."""


class SpecKind(str, enum.Enum):
    RANGE_INT = "range_int"
    RANGE_FLOAT = "range_float"
    ENSEMBLE = "ensemble"


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    """How one parameter of a function is drawn: an int or float range (inclusive), or a set of values."""

    name: str
    kind: SpecKind
    values: tuple  # (min, max) for ranges, the choices for an ensemble

    def to_dict(self) -> dict:
        return {"name": self.name, self.kind.value: list(self.values)}

    @classmethod
    def from_dict(cls, spec: dict, *, where: str = "parameters") -> ParameterSpec:
        """Parse and check one spec (raises ``ValueError`` naming ``where`` and the key)."""
        return _parse_spec(spec, where)


# --------------------------------------------------------------------------- parsing


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


_NUL = "holds a NUL byte (\\x00), which the database cannot store"


class _SpecError(ValueError):
    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def _parse_spec(spec: Any, where: str) -> ParameterSpec:
    if not isinstance(spec, dict):
        raise _SpecError(where, f"expected a mapping {{name, range_int|range_float|ensemble}}, got {_type_name(spec)}")
    unknown = sorted(set(spec) - {"name", *(k.value for k in SpecKind)})
    if unknown:
        raise _SpecError(f"{where}:{unknown[0]}", "unknown key (expected name and one of range_int, range_float, ensemble)")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _SpecError(f"{where}:name", f"expected a non-empty string, got {_type_name(name)}")
    if name in STORAGE_PARAMETERS:
        raise _SpecError(f"{where}:name", f"{name!r} is reserved: FaaSLoad passes {', '.join(STORAGE_PARAMETERS)} itself")
    if "\x00" in name:
        raise _SpecError(f"{where}:name", _NUL)
    kinds = [k for k in SpecKind if k.value in spec]
    if len(kinds) != 1:
        raise _SpecError(where, f"parameter {name!r}: expected exactly one of range_int, range_float, ensemble, "
                                f"got {len(kinds) or 'none'}")
    kind = kinds[0]
    value = spec[kind.value]
    key = f"{where}:{kind.value}"
    if kind is SpecKind.ENSEMBLE:
        if not isinstance(value, list) or not value:
            raise _SpecError(key, "expected a non-empty list of values")
        for i, item in enumerate(value):
            if not (isinstance(item, (str, bool)) or _is_number(item)):
                raise _SpecError(f"{key}[{i}]", f"expected a string, number or boolean, got {_type_name(item)}")
            if isinstance(item, str) and "\x00" in item:
                raise _SpecError(f"{key}[{i}]", _NUL)
        return ParameterSpec(name, kind, tuple(value))
    check = _is_int if kind is SpecKind.RANGE_INT else _is_number
    if (not isinstance(value, list) or len(value) != 2 or not all(check(v) for v in value)
            or value[0] > value[1]):
        what = "integers" if kind is SpecKind.RANGE_INT else "numbers"
        raise _SpecError(key, f"expected [min, max] with min <= max ({what}), got {value!r}")
    lo, hi = value if kind is SpecKind.RANGE_INT else (float(value[0]), float(value[1]))
    return ParameterSpec(name, kind, (lo, hi))


def _fail(path: Path, key: str, message: str):
    raise ManifestError(str(path), key, message)


def _packages(path: Path, document: Any) -> tuple[dict, str]:
    if not isinstance(document, dict):
        _fail(path, "", f"expected a mapping with `project:` or `packages:`, got {_type_name(document)}")
    prefix = ""
    if "project" in document:
        document, prefix = document["project"], "project:"
        if not isinstance(document, dict):
            _fail(path, "project", f"expected a mapping, got {_type_name(document)}")
    packages = document.get("packages")
    if not isinstance(packages, dict) or not packages:
        _fail(path, f"{prefix}packages", "expected a non-empty mapping of packages"
              if packages is None or isinstance(packages, dict) else f"expected a mapping, got {_type_name(packages)}")
    return packages, prefix + "packages"


def _limits(path: Path, key: str, limits: Any) -> dict:
    if limits is None:
        return {}
    if not isinstance(limits, dict):
        _fail(path, key, f"expected a mapping, got {_type_name(limits)}")
    values = {}
    for name, value in limits.items():
        if name in _IGNORED_LIMITS:
            continue
        if name not in _LIMITS:
            _fail(path, f"{key}:{name}", f"unknown limit (expected one of {', '.join(_LIMITS)})")
        column, minimum = _LIMITS[name]
        if not _is_int(value) or value < minimum:
            _fail(path, f"{key}:{name}", f"expected an integer >= {minimum} (no unit string), got {value!r}")
        values[column] = value
    return values


def _annotations(path: Path, key: str, annotations: Any) -> tuple[str | None, tuple[dict, ...]]:
    if annotations is None:
        return None, ()
    if not isinstance(annotations, dict):
        _fail(path, key, f"expected a mapping, got {_type_name(annotations)}")
    input_kind = annotations.get("input_kind")
    if input_kind is not None and input_kind not in INPUT_KINDS:
        _fail(path, f"{key}:input_kind", f"expected one of {', '.join(INPUT_KINDS)}, got {input_kind!r}")
    specs = annotations.get("parameters", [])
    if specs is None:
        specs = []
    if not isinstance(specs, list):
        _fail(path, f"{key}:parameters", f"expected a list of parameter specs, got {_type_name(specs)}")
    parsed: list[ParameterSpec] = []
    for i, spec in enumerate(specs):
        try:
            parsed.append(_parse_spec(spec, f"{key}:parameters[{i}]"))
        except _SpecError as exc:
            raise ManifestError(str(path), exc.key, exc.message) from None
        if any(p.name == parsed[-1].name for p in parsed[:-1]):
            _fail(path, f"{key}:parameters[{i}]:name", f"duplicate parameter {parsed[-1].name!r}")
    return input_kind, tuple(p.to_dict() for p in parsed)


def _inputs(path: Path, key: str, inputs: Any) -> tuple[tuple[str, Any], ...]:
    """wskdeploy's ``inputs``: the action's default parameters, ``name: value`` or the multi-line
    ``name: {value: V}`` (else its ``default``; ``type``, ``description``, ``required`` ignored),
    scalar values only."""
    if inputs is None:
        return ()
    if not isinstance(inputs, dict):
        _fail(path, key, f"expected a mapping of parameter names to values, got {_type_name(inputs)}")
    parsed = []
    for name, value in inputs.items():
        if isinstance(value, dict):
            if "value" not in value and "default" not in value:
                _fail(path, f"{key}:{name}", "expected a value, or a mapping with `value:` or `default:`")
            value = value["value"] if "value" in value else value["default"]
        if not isinstance(value, (str, int, float, bool)):
            _fail(path, f"{key}:{name}", f"expected a string, number or boolean, got {_type_name(value)}")
        parsed.append((str(name), value))
    return tuple(sorted(parsed))


def _action(path: Path, key: str, package: str, name: str, action: Any) -> FunctionRow:
    if not isinstance(action, dict):
        _fail(path, key, f"expected a mapping, got {_type_name(action)}")
    sources = [k for k in ("function", "location", "code", "docker", "native") if action.get(k) is not None]
    if not sources:
        _fail(path, key, "expected one of function, code or docker")
    if len(sources) > 1:
        _fail(path, f"{key}:{sources[1]}", f"cannot be combined with {sources[0]}")
    for field in ("function", "location", "docker", "runtime", "main", "kind"):
        if field in action and not isinstance(action[field], str):
            _fail(path, f"{key}:{field}", f"expected a string, got {_type_name(action[field])}")
    runtime = action.get("runtime") or action.get("kind")
    code_path = image = None
    if "code" in sources and not runtime:
        _fail(path, f"{key}:runtime", "required with inline `code`")
    if sources[0] in ("function", "location"):
        code_path = str((path.parent / action[sources[0]]).resolve())
    elif sources[0] in ("docker", "native"):
        image = action[sources[0]] if isinstance(action[sources[0]], str) else None
        runtime = runtime or "blackbox"
    limits = _limits(path, f"{key}:limits", action.get("limits"))
    input_kind, specs = _annotations(path, f"{key}:annotations", action.get("annotations"))
    inputs = _inputs(path, f"{key}:inputs", action.get("inputs"))
    return FunctionRow(name=name, package=None if package.lower() == "default" else package, runtime=runtime,
                       image=image, code_path=code_path, main=action.get("main"), input_kind=input_kind,
                       parameter_specs=specs, inputs=inputs, manifest_path=str(path.resolve()), **limits)


def read_functions(path: str | Path) -> list[FunctionRow]:
    """Read every action of a wskdeploy manifest as a :class:`FunctionRow` (raises :class:`ManifestError`)."""
    path = Path(path)
    problem = None
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or exc}"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}"
    if problem is not None:
        _fail(path, "", problem)
    packages, packages_key = _packages(path, document)
    rows: dict[str, tuple[str, FunctionRow]] = {}
    for package, body in packages.items():
        pkey = f"{packages_key}:{package}"
        if body is None:
            continue
        if not isinstance(body, dict):
            _fail(path, pkey, f"expected a mapping, got {_type_name(body)}")
        actions = body.get("actions") or {}
        if not isinstance(actions, dict):
            _fail(path, f"{pkey}:actions", f"expected a mapping of actions, got {_type_name(actions)}")
        for name, action in actions.items():
            key = f"{pkey}:actions:{name}"
            if name in rows:
                _fail(path, key, f"action name {name!r} already defined at {rows[name][0]} "
                                 "(function names are unique in the functions table)")
            rows[name] = (key, _action(path, key, str(package), str(name), action))
    if not rows:
        _fail(path, packages_key, "no action in any package")
    return [row for _, row in rows.values()]


# --------------------------------------------------------------------------- database


def load_to_database(functions: list[FunctionRow], db_cfg: DatabaseConfiguration) -> int:
    """Insert or update ``functions`` (by name) in the ``functions`` table; return how many were written."""
    from loader.storage.experiments import open_store, upsert_functions
    conn = open_store(db_cfg)
    try:
        return upsert_functions(conn, list(functions))
    finally:
        conn.close()


def parameter_specs(row: FunctionRow) -> tuple[ParameterSpec, ...]:
    """The typed specs of a function row (raises ``ValueError`` naming the function and the key)."""
    try:
        return tuple(_parse_spec(s, f"parameters[{i}]") for i, s in enumerate(row.parameter_specs))
    except _SpecError as exc:
        raise ValueError(f"function {row.name!r}: {exc}") from None


# --------------------------------------------------------------------------- command


def main(argv: list[str] | None = None) -> int:
    from faasload import cli
    from loader import config as loader_config
    from loader.storage.database import open_database

    parser = argparse.ArgumentParser(prog="python -m loader.functions",
                                     description="Read wskdeploy manifests and fill the `functions` table.")
    parser.add_argument("manifests", nargs="+", type=Path, metavar="MANIFEST")
    parser.add_argument("--check", action="store_true", help="only validate the manifests, write nothing")
    cli.add_config_arguments(parser, loader_config.DEFAULT_PATH)
    args = parser.parse_args(argv)

    def body() -> int:
        rows = [row for manifest in args.manifests for row in read_functions(manifest)]
        names = [r.name for r in rows]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ManifestError(", ".join(map(str, args.manifests)), "", f"action defined twice: {duplicates[0]}")
        if args.check:
            print(f"{len(rows)} functions valid: {', '.join(sorted(names))}")
            return cli.EXIT_OK
        config = loader_config.load(args.config, cli.parse_overrides(args.overrides))
        opened = open_database(config.database)
        try:
            count = load_to_database(rows, opened.config)
        finally:
            opened.close()
        print(f"{count} functions written to {opened.config.describe()}: {', '.join(sorted(names))}")
        return cli.EXIT_OK

    return cli.run_main(body, "loader.functions")


if __name__ == "__main__":
    sys.exit(main())
