"""Which action each trace function invokes (``--map``), docs/workloads.md "Mapping".

* ``nearest``: the manifest action closest to the function in (p75 duration, p75 memory),
  as vSwarm: distance ``sqrt(ln(d_f/d_a)^2 + ln(m_f/m_a)^2)`` (log scale: durations span
  six orders of magnitude; values below 1 count as 1; the memory term is left out when the
  source does not know the function's memory).  Ties go to the first action in the manifest.
* ``one-to-one``: no two functions share an action: the assignment of least total distance
  (``scipy.optimize.linear_sum_assignment``); with more functions than actions it falls
  back to ``nearest`` with a warning.
* ``calibrated``: each function gets its own action running ``actions/calibrated/replay.py``,
  whose parameters (``memory_mb``, ``duration_ms``, ``cpu_share``) make it allocate and run
  like the function.
* ``named``: the action the source names (FaaSProfiler's ``application``, a synthetic
  function's ``action``), looked up in the manifest.

A manifest action is a candidate for ``nearest``/``one-to-one`` when it carries the
annotation ``profile: {duration_ms: P75, memory_mb: P75}``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loader.manifest import ParameterSpec, read_functions
from loader.storage.rows import FunctionRow

from .records import TraceFunction, WorkloadError

CALIBRATED_CODE = Path(__file__).resolve().parent.parent.parent / "actions" / "calibrated" / "replay.py"
DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent.parent / "actions" / "manifest.yml"


class MapMode(enum.StrEnum):
    NEAREST = "nearest"
    ONE_TO_ONE = "one-to-one"
    CALIBRATED = "calibrated"
    NAMED = "named"


class MemoryPick(enum.StrEnum):
    """``--memory``: the calibrated action's ``memory_mb`` per invocation."""

    MEDIAN = "median"  # the function's median memory, the same for all its invocations
    DRAW = "draw"      # drawn per invocation from the function's memory percentiles


@dataclass(frozen=True, slots=True)
class ActionTarget:
    """A manifest action that trace functions can be mapped onto."""

    row: FunctionRow
    specs: tuple[ParameterSpec, ...]
    duration_ms: float | None = None
    memory_mb: float | None = None

    @property
    def name(self) -> str:
        return self.row.name


def _profile(path: Path, key: str, annotations: Any) -> tuple[float | None, float | None]:
    if not isinstance(annotations, dict) or annotations.get("profile") is None:
        return None, None
    profile = annotations["profile"]
    where = f"{path}: {key}:annotations:profile"
    if not isinstance(profile, dict):
        raise WorkloadError(where, "expected a mapping {duration_ms: P75, memory_mb: P75}")
    unknown = sorted(set(profile) - {"duration_ms", "memory_mb"})
    if unknown:
        raise WorkloadError(f"{where}:{unknown[0]}", "unknown key (expected duration_ms and memory_mb)")
    values = []
    for name in ("duration_ms", "memory_mb"):
        value = profile.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise WorkloadError(f"{where}:{name}", f"expected a number > 0, got {value!r}")
        values.append(float(value))
    return values[0], values[1]


def read_targets(manifest: Path) -> list[ActionTarget]:
    """Every action of a wskdeploy manifest, with its ``profile`` annotation when it has one."""
    from loader.manifest import ManifestError, parameter_specs
    try:
        rows = read_functions(manifest)
    except ManifestError as exc:
        raise WorkloadError("", str(exc)) from None
    document = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    document = document.get("project", document)
    annotations = {}
    for package, body in (document.get("packages") or {}).items():
        for name, action in ((body or {}).get("actions") or {}).items():
            key = f"packages:{package}:actions:{name}"
            annotations[str(name)] = _profile(manifest, key, (action or {}).get("annotations"))
    targets = []
    for row in rows:
        try:
            specs = parameter_specs(row)
        except ValueError as exc:
            raise WorkloadError(str(manifest), str(exc)) from None
        duration_ms, memory_mb = annotations.get(row.name, (None, None))
        targets.append(ActionTarget(row, specs, duration_ms, memory_mb))
    return targets


def distance(function: TraceFunction, target: ActionTarget) -> float:
    """Log-scale distance in (p75 duration, p75 memory); memory left out when the function's is unknown."""
    profile = function.profile
    assert profile.duration_ms is not None and target.duration_ms is not None and target.memory_mb is not None
    total = math.log(max(profile.duration_ms.p75, 1.0) / max(target.duration_ms, 1.0)) ** 2
    if profile.memory_mb is not None:
        total += math.log(max(profile.memory_mb.p75, 1.0) / max(target.memory_mb, 1.0)) ** 2
    return math.sqrt(total)


def _candidates(targets: list[ActionTarget], manifest: Path) -> list[ActionTarget]:
    found = [t for t in targets if t.duration_ms is not None]
    if not found:
        raise WorkloadError(f"--manifest {manifest}", "no action has a `profile: {duration_ms, memory_mb}` "
                                                     "annotation: nearest and one-to-one need them (docs/workloads.md)")
    return found


def _needs_duration(functions: list[TraceFunction], mode: MapMode) -> None:
    for function in functions:
        if function.profile.duration_ms is None:
            raise WorkloadError(function.where, f"--map {mode.value} needs the function's duration, which this "
                                                "source does not give (use --map named, or give duration_ms)")


def assign(functions: list[TraceFunction], mode: MapMode, targets: list[ActionTarget], manifest: Path,
           warn) -> list[tuple[ActionTarget | None, float | None]]:
    """For each function, its manifest action (None for calibrated) and the distance (nearest, one-to-one)."""
    if mode is MapMode.CALIBRATED:
        _needs_duration(functions, mode)
        return [(None, None) for _ in functions]
    if mode is MapMode.NAMED:
        by_name = {t.name: t for t in targets}
        result: list[tuple[ActionTarget | None, float | None]] = []
        for function in functions:
            if function.action is None:
                raise WorkloadError(function.where, "--map named: this source names no action for its functions "
                                                    "(use nearest, one-to-one or calibrated)")
            if function.action not in by_name:
                raise WorkloadError(function.where, f"action {function.action!r} is not in {manifest} (give "
                                                    "--manifest with it, or use --map calibrated)")
            result.append((by_name[function.action], None))
        return result
    _needs_duration(functions, mode)
    candidates = _candidates(targets, manifest)
    costs = [[distance(f, t) for t in candidates] for f in functions]
    if mode is MapMode.ONE_TO_ONE:
        if len(functions) <= len(candidates):
            from scipy.optimize import linear_sum_assignment
            rows, columns = linear_sum_assignment(costs)
            chosen = dict(zip(rows.tolist(), columns.tolist()))
            return [(candidates[chosen[i]], costs[i][chosen[i]]) for i in range(len(functions))]
        warn(f"--map one-to-one: {len(functions)} functions but {len(candidates)} profiled actions: "
             f"falling back to nearest (actions are shared)")
    return [(candidates[min(range(len(row)), key=row.__getitem__)], min(row)) for row in costs]
