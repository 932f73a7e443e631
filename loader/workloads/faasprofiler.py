"""``faasprofiler --config FILE``: a FaaSProfiler synthetic workload (``workload_configs_*.json``).

What each key becomes (docs/workloads.md "FaaSProfiler"):

* ``test_duration_in_seconds``: the workload's length; ``random_seed``: the seed unless
  ``--seed`` is given (FaaSProfiler also mixes in Python's per-process ``hash()`` of the
  instance name, so its own runs do not reproduce; ours do);
* each of ``instances`` is one trace function: owner ``test_name``, app and action
  ``application`` (the action FaaSProfiler invokes), function the instance's name;
* ``distribution: Poisson`` + ``rate``: a Poisson process; ``distribution: Uniform`` +
  ``rate``: one invocation every ``1/rate`` s after a random shift (what FaaSProfiler's
  "Uniform" does); ``activity_window: [start, end]``: only that part of the test;
* ``interarrivals_list``: explicit gaps, the first from the start; cut at the test's end;
* ``param_file``: a JSON object (path relative to the config file) whose keys become the
  parameters of every invocation (``PARAM:VALUE``; non-string values as JSON text);
* ``blocking_cli``, ``perf_monitoring``: ignored (FaaSLoad invokes non-blocking and has its
  own monitor); ``endpoint`` must be ``local_openwhisk``; ``data_file`` (binary web-action
  payloads) is not supported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import specs, tables
from .records import SourceId, WorkloadError
from .specs import ArrivalSpec, FunctionSpec, Parameter, Process

TOP_KEYS = ("test_name", "test_duration_in_seconds", "random_seed", "blocking_cli", "endpoint", "instances",
            "perf_monitoring")
INSTANCE_KEYS = ("application", "distribution", "rate", "activity_window", "interarrivals_list", "param_file",
                 "data_file")
DISTRIBUTIONS = {"Poisson": Process.POISSON, "Uniform": Process.EQUIDISTANT}


def _json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkloadError(str(path), f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise WorkloadError(str(path), f"not UTF-8 text (expected {what})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"{path}:{exc.lineno}", f"not valid JSON ({what}): {exc.msg}") from None


def _param_file(config: Path, value: Any, where: str) -> tuple[tuple[Parameter, ...], Path]:
    if not isinstance(value, str) or not value:
        raise WorkloadError(where, f"expected a file name, got {value!r}")
    path = (config.parent / value) if not Path(value).is_absolute() else Path(value)
    if not path.is_file():
        raise WorkloadError(where, f"no such file {path} (param_file is read relative to the config file)")
    body = _json(path, "a param_file: a JSON object of parameters")
    if not isinstance(body, dict):
        raise WorkloadError(str(path), f"expected a JSON object of parameters, got {type(body).__name__}")
    return tuple(Parameter(specs.check_parameter_name(k, f"{path}: {k}"), fixed=specs.fixed_text(v, f"{path}: {k}"))
                 for k, v in body.items()), path


def _instance(config: Path, name: str, body: Any, owner: str, span_us: int
              ) -> tuple[FunctionSpec, Path | None]:
    where = f"{config}: instances:{name}"
    if not isinstance(body, dict):
        raise WorkloadError(where, f"expected an object, got {type(body).__name__}")
    for key in body:
        if key not in INSTANCE_KEYS:
            raise WorkloadError(f"{where}:{key}", f"unknown key (expected one of {', '.join(INSTANCE_KEYS)})")
    if "data_file" in body:
        raise WorkloadError(f"{where}:data_file", "binary web-action payloads are not supported")
    application = body.get("application")
    if not isinstance(application, str) or not application:
        raise WorkloadError(f"{where}:application", f"required: the action to invoke, got {application!r}")
    window = (0, span_us)
    if "interarrivals_list" in body:
        gaps = body["interarrivals_list"]
        if not isinstance(gaps, list):
            raise WorkloadError(f"{where}:interarrivals_list", "expected a list of seconds")
        offsets, total = [], 0
        for i, gap in enumerate(gaps):
            total += specs.seconds_to_us(gap, f"{where}:interarrivals_list[{i}]")
            offsets.append(total)
        arrival = ArrivalSpec(Process.EXPLICIT, offsets_us=tuple(offsets))
        window = (0, span_us + 1)  # FaaSProfiler keeps an event at exactly the test's end
    else:
        distribution = body.get("distribution")
        if distribution not in DISTRIBUTIONS:
            raise WorkloadError(f"{where}:distribution", f"expected Poisson or Uniform (or an interarrivals_list), "
                                                         f"got {distribution!r}")
        arrival = ArrivalSpec(DISTRIBUTIONS[distribution], rate_per_s=specs.rate(body.get("rate"), f"{where}:rate"))
        if "activity_window" in body:
            value = body["activity_window"]
            if not isinstance(value, list) or len(value) != 2:
                raise WorkloadError(f"{where}:activity_window", f"expected [start, end] in seconds, got {value!r}")
            window = (specs.seconds_to_us(value[0], f"{where}:activity_window"),
                      min(span_us, specs.seconds_to_us(value[1], f"{where}:activity_window")))
    parameters: tuple[Parameter, ...] = ()
    param_path: Path | None = None
    if "param_file" in body:
        parameters, param_path = _param_file(config, body["param_file"], f"{where}:param_file")
    spec = FunctionSpec(SourceId(owner, application, name), where, arrival, window, application, (), parameters)
    return spec, param_path


def load(path: Path, seed: int | None) -> specs.SpecSource:
    """Read and check a FaaSProfiler workload config; ``seed`` (``--seed``) overrides ``random_seed``."""
    document = _json(path, "a FaaSProfiler workload config")
    if not isinstance(document, dict):
        raise WorkloadError(str(path), f"expected a JSON object, got {type(document).__name__}")
    for key in document:
        if key not in TOP_KEYS:
            raise WorkloadError(f"{path}: {key}", f"unknown key (expected one of {', '.join(TOP_KEYS)})")
    endpoint = document.get("endpoint", "local_openwhisk")
    if endpoint != "local_openwhisk":
        raise WorkloadError(f"{path}: endpoint", f"{endpoint!r}: only local_openwhisk (OpenWhisk actions) is supported")
    duration = document.get("test_duration_in_seconds")
    span_us = specs.seconds_to_us(duration, f"{path}: test_duration_in_seconds")
    if span_us <= 0:
        raise WorkloadError(f"{path}: test_duration_in_seconds", "required, > 0")
    config_seed = document.get("random_seed", 0)
    if isinstance(config_seed, bool) or not isinstance(config_seed, int):
        raise WorkloadError(f"{path}: random_seed", f"expected an integer, got {config_seed!r}")
    owner = document.get("test_name", "faasprofiler")
    if not isinstance(owner, str) or not owner:
        raise WorkloadError(f"{path}: test_name", f"expected a non-empty string, got {owner!r}")
    instances = document.get("instances")
    if not isinstance(instances, dict) or not instances:
        raise WorkloadError(f"{path}: instances", "expected a non-empty object of instances")
    parsed, files = [], [tables.sha256(path)]
    for name, body in instances.items():
        spec, param_path = _instance(path, str(name), body, owner, span_us)
        parsed.append(spec)
        if param_path is not None and all(f.path != str(param_path) for f in files):
            files.append(tables.sha256(param_path))
    ignored = sorted(k for k in ("blocking_cli", "perf_monitoring") if k in document)
    return specs.SpecSource("faasprofiler", parsed, span_us, config_seed if seed is None else seed, files,
                            {"random_seed": config_seed, "ignored_keys": ignored})
