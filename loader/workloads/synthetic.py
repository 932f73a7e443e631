"""``synthetic --spec FILE.yml``: FaaSLoad's own workload specification (docs/workloads.md "Synthetic").

::

    seed: 7                      # used when --seed is not given
    duration_s: 600              # the workload's length
    functions:
      resize_hot:                # the function's name ([A-Za-z0-9_])
        user: alice1             # owner (default: synthetic); --users owner makes it the OpenWhisk user
        app: photos              # default: the function's name
        action: image_resize     # the action it invokes with --map named
        arrivals: {process: poisson, rate_per_s: 2.0}
        window_s: [60, 600]      # activity window [start, end) (default: the whole duration)
        inputs: [1.jpg, 2.jpg]   # or input: 1.jpg (default: --input, or the mapped action's inputs)
        parameters:
          - {name: width, range_int: [8, 128]}
          - {name: mode, fixed: nearest}
        duration_ms: 120         # a number, or percentiles {50: 100, 99: 400} (for nearest / calibrated)
        memory_mb: 64

Arrival processes: ``poisson``, ``uniform``, ``equidistant`` (``rate_per_s``), ``explicit``
(``offsets_s: [...]`` or ``interarrivals_s: [...]``) and ``piecewise`` (``rates: [[from_s,
rate_per_s], ...]``, Poisson with a rate constant per segment).  Every key is checked; an
unknown or misspelled key is an error naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from loader.manifest import ParameterSpec

from . import specs, tables
from .records import Percentiles, SourceId, WorkloadError
from .specs import ArrivalSpec, FunctionSpec, Parameter, Process

TOP_KEYS = ("seed", "duration_s", "functions")
FUNCTION_KEYS = ("user", "app", "action", "arrivals", "window_s", "input", "inputs", "parameters", "duration_ms",
                 "memory_mb")
PROCESS_KEYS = {Process.POISSON: ("rate_per_s",), Process.UNIFORM: ("rate_per_s",),
                Process.EQUIDISTANT: ("rate_per_s",), Process.EXPLICIT: ("offsets_s", "interarrivals_s"),
                Process.PIECEWISE: ("rates",)}
DEFAULT_USER = "synthetic"


def _join(where: str, key: object) -> str:
    """``FILE: key`` at the top level, ``FILE: a:b:key`` below."""
    return f"{where}{key}" if where.endswith(": ") else f"{where}:{key}"


def _keys(value: Any, allowed: tuple[str, ...], where: str) -> dict:
    if not isinstance(value, dict):
        raise WorkloadError(where.rstrip(": "), f"expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise WorkloadError(_join(where, key), f"unknown key (expected one of {', '.join(allowed)})")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
        raise WorkloadError(where, f"expected a non-empty string, got {value!r}")
    return specs.check_text(str(value), where)


def percentiles(value: Any, where: str) -> Percentiles:
    """A number, or a mapping ``{percent: value}``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return Percentiles.constant(float(value))
    if isinstance(value, dict) and value:
        try:
            return Percentiles.of(sorted((float(p), float(v)) for p, v in value.items()))
        except (TypeError, ValueError) as exc:
            raise WorkloadError(where, f"percentiles {value!r}: {exc}") from None
    raise WorkloadError(where, f"expected a number > 0 or a mapping {{percent: value}}, got {value!r}")


def arrival(value: Any, where: str) -> ArrivalSpec:
    if not isinstance(value, dict) or "process" not in value:
        raise WorkloadError(where, "expected a mapping with `process` (poisson, uniform, equidistant, explicit, "
                                   "piecewise)")
    try:
        process = Process(value["process"])
    except ValueError:
        raise WorkloadError(f"{where}:process", f"unknown process {value['process']!r} (expected poisson, uniform, "
                                                "equidistant, explicit or piecewise)") from None
    allowed = PROCESS_KEYS[process]
    _keys(value, ("process", *allowed), where)
    if process is Process.EXPLICIT:
        given = [k for k in allowed if k in value]
        if len(given) != 1 or not isinstance(value[given[0]], list):
            raise WorkloadError(where, "explicit: expected one list, offsets_s or interarrivals_s")
        key = given[0]
        times = [specs.seconds_to_us(v, f"{where}:{key}[{i}]") for i, v in enumerate(value[key])]
        if key == "interarrivals_s":
            total, offsets = 0, []
            for gap in times:
                total += gap
                offsets.append(total)
            times = offsets
        return ArrivalSpec(process, offsets_us=tuple(sorted(times)))
    if process is Process.PIECEWISE:
        rates = value.get("rates")
        if not isinstance(rates, list) or not rates:
            raise WorkloadError(f"{where}:rates", "expected a list of [from_s, rate_per_s]")
        segments: list[tuple[int, float]] = []
        for i, item in enumerate(rates):
            if not isinstance(item, list) or len(item) != 2:
                raise WorkloadError(f"{where}:rates[{i}]", f"expected [from_s, rate_per_s], got {item!r}")
            start = specs.seconds_to_us(item[0], f"{where}:rates[{i}]")
            if segments and start <= segments[-1][0]:
                raise WorkloadError(f"{where}:rates[{i}]", "from_s must increase")
            segments.append((start, specs.rate(item[1], f"{where}:rates[{i}]")))
        return ArrivalSpec(process, segments=tuple(segments))
    if "rate_per_s" not in value:
        raise WorkloadError(f"{where}:rate_per_s", f"required for {process.value}")
    return ArrivalSpec(process, rate_per_s=specs.rate(value["rate_per_s"], f"{where}:rate_per_s"))


def parameters(value: Any, where: str) -> tuple[Parameter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WorkloadError(where, "expected a list of {name, fixed|range_int|range_float|ensemble}")
    result: list[Parameter] = []
    for i, item in enumerate(value):
        key = f"{where}[{i}]"
        if isinstance(item, dict) and "fixed" in item:
            _keys(item, ("name", "fixed"), key)
            name = specs.check_parameter_name(item.get("name"), f"{key}:name")
            result.append(Parameter(name, fixed=specs.fixed_text(item["fixed"], f"{key}:fixed")))
        else:
            if isinstance(item, dict):
                _keys(item, ("name", "range_int", "range_float", "ensemble", "fixed"), key)
            try:
                spec = ParameterSpec.from_dict(item, where=key)
            except ValueError as exc:
                raise WorkloadError("", str(exc)) from None
            for choice in spec.values if spec.kind.value == "ensemble" else ():
                specs.fixed_text(choice, f"{key}:ensemble")
            result.append(Parameter(specs.check_parameter_name(spec.name, f"{key}:name"), spec=spec))
        if any(p.name == result[-1].name for p in result[:-1]):
            raise WorkloadError(f"{key}:name", f"parameter {result[-1].name!r} given twice")
    return tuple(result)


def function(name: str, value: Any, where: str, span_us: int) -> FunctionSpec:
    _keys(value, FUNCTION_KEYS, where)
    if "arrivals" not in value:
        raise WorkloadError(f"{where}:arrivals", "required")
    window = (0, span_us)
    if "window_s" in value:
        window_value = value["window_s"]
        if not isinstance(window_value, list) or len(window_value) != 2:
            raise WorkloadError(f"{where}:window_s", f"expected [start_s, end_s], got {window_value!r}")
        window = (specs.seconds_to_us(window_value[0], f"{where}:window_s"),
                  min(span_us, specs.seconds_to_us(window_value[1], f"{where}:window_s")))
        if window[0] >= window[1]:
            raise WorkloadError(f"{where}:window_s", f"empty window {window_value!r} within duration_s")
    if "input" in value and "inputs" in value:
        raise WorkloadError(f"{where}:inputs", "give input or inputs, not both")
    inputs: tuple[str, ...] = ()
    if "input" in value:
        inputs = (_text(value["input"], f"{where}:input"),)
    elif "inputs" in value:
        if not isinstance(value["inputs"], list) or not value["inputs"]:
            raise WorkloadError(f"{where}:inputs", "expected a non-empty list")
        inputs = tuple(_text(v, f"{where}:inputs[{i}]") for i, v in enumerate(value["inputs"]))
    user = _text(value.get("user", DEFAULT_USER), f"{where}:user")
    app = _text(value.get("app", name), f"{where}:app")
    action = _text(value["action"], f"{where}:action") if "action" in value else None
    return FunctionSpec(
        SourceId(user, app, name), where, arrival(value["arrivals"], f"{where}:arrivals"), window, action, inputs,
        parameters(value.get("parameters"), f"{where}:parameters"),
        percentiles(value["duration_ms"], f"{where}:duration_ms") if "duration_ms" in value else None,
        percentiles(value["memory_mb"], f"{where}:memory_mb") if "memory_mb" in value else None)


def load(path: Path, seed: int | None) -> specs.SpecSource:
    """Read and check a synthetic spec; ``seed`` (``--seed``) overrides the spec's."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkloadError(str(path), f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise WorkloadError(str(path), "not UTF-8 text (is it a YAML file?)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise WorkloadError(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    prefix = f"{path}: "
    _keys(document, TOP_KEYS, prefix)
    if "duration_s" not in document:
        raise WorkloadError(f"{prefix}duration_s", "required (the workload's length in seconds)")
    span_us = specs.seconds_to_us(document["duration_s"], f"{prefix}duration_s")
    if span_us <= 0:
        raise WorkloadError(f"{prefix}duration_s", "must be > 0")
    spec_seed = document.get("seed", 0)
    if isinstance(spec_seed, bool) or not isinstance(spec_seed, int):
        raise WorkloadError(f"{prefix}seed", f"expected an integer, got {spec_seed!r}")
    functions = document.get("functions")
    if not isinstance(functions, dict) or not functions:
        raise WorkloadError(f"{prefix}functions", "expected a non-empty mapping of functions")
    parsed = [function(str(name), body, f"{prefix}functions:{name}", span_us) for name, body in functions.items()]
    effective = spec_seed if seed is None else seed
    return specs.SpecSource("synthetic", parsed, span_us, effective, [tables.sha256(path)],
                            {"spec_seed": spec_seed})
