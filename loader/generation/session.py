"""One session of a generation: its traces resumed from the newest checkpoint, and checkpointing.

Resuming (docs/generator.md): the checkpoint gives each trace's *position* (its first
invocations recorded in the database with a final status) and the random state
there.  :meth:`Generation.reconcile`, before anything is sent, deletes this
experiment's unfinished rows (``planned``, ``sent``, ``cancelled``, ``lost``: they are
re-run) and skips the invocations beyond the positions that already have a final
status (recorded after the last checkpoint, e.g. before a SIGKILL; their parameters
are drawn again so the stream stays in step).  The pipeline reports each committed
final row (:meth:`Generation.on_stored`); checkpoints cover only those.  With the
store's natural keys (experiment, trace, seq) the dataset ends with no duplicate and
no gap.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from loader.generation import checkpoint as genstate
from loader.generation.traces import EXTENSIONS, GeneratedTrace, new_stream, rng_from_json
from loader.manifest import ParameterSpec, parameter_specs
from loader.plan import PlannedInvocation
from loader.storage import experiments
from loader.storage.rows import FunctionRow, RunStatus

log = logging.getLogger(__name__)

#: Final statuses that count as recorded; ``cancelled`` and ``lost`` runs are re-run on resume.
CONFIRMED_STATUSES = tuple(status.value for status in RunStatus if status.confirmed)
UNCONFIRMED_STATUSES = tuple(status.value for status in RunStatus if not status.confirmed)


class GenerationError(RuntimeError):
    """Generator mode cannot start (functions, checkpoint or database do not fit); the message says why."""


@dataclass(frozen=True)
class GenerationSettings:
    seed: int
    nbinputs: dict
    interinvocationtime_s: float
    incont: str
    outcont: str
    statedir: Path
    experiment: str | None = None
    checkpoint_interval_s: float = 5.0

    @classmethod
    def from_config(cls, config) -> GenerationSettings:
        g = config.generation
        return cls(seed=g.seed, interinvocationtime_s=g.interinvocationtime, statedir=Path(g.statedir),
                   nbinputs={"image": g.nbinputs.image, "audio": g.nbinputs.audio, "video": g.nbinputs.video},
                   incont=config.injection.incont, outcont=config.injection.outcont,
                   experiment=config.experiment.name)


def fingerprint(functions: list[FunctionRow], settings: GenerationSettings) -> str:
    """What the planned invocations depend on, besides the seed and nbinputs."""
    items = [[f.name, f.package, f.input_kind, list(f.parameter_specs)] for f in functions]
    text = json.dumps([items, settings.incont, settings.outcont], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def check_functions(functions: list[FunctionRow]) -> dict[str, tuple[ParameterSpec, ...]]:
    """The typed specs of every function; :class:`GenerationError` listing every unusable one."""
    if not functions:
        raise GenerationError("the functions table is empty: fill it from a manifest first "
                              "(python -m loader.functions actions/manifest.yml)")
    problems, specs = [], {}
    for row in functions:
        if row.input_kind not in EXTENSIONS:
            problems.append(f"function {row.name!r} has no input_kind (annotation input_kind: image|audio|video "
                            f"in {row.manifest_path or 'its manifest'})")
            continue
        try:
            specs[row.name] = parameter_specs(row)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise GenerationError("cannot generate: " + "; ".join(problems))
    return specs


class Generation:
    """The traces of one generation (functions ordered by name), resumed from ``settings.statedir``."""

    def __init__(self, settings: GenerationSettings, functions: list[FunctionRow], *, now_epoch_s=time.time,
                 monotonic_s=time.monotonic):
        self.settings = settings
        self._now, self._monotonic = now_epoch_s, monotonic_s
        functions = sorted(functions, key=lambda f: f.name)
        specs = check_functions(functions)
        self.fingerprint = fingerprint(functions, settings)
        self.previous = genstate.newest(settings.statedir)
        positions = self._check_previous()
        if self.previous is not None:
            self.experiment = self.previous.experiment
        else:
            stamp = datetime.datetime.fromtimestamp(now_epoch_s(), datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
            self.experiment = settings.experiment or f"generation-seed{settings.seed}-{stamp}"
        interval_us = round(settings.interinvocationtime_s * 1_000_000)
        self.traces: list[GeneratedTrace] = []
        for row in functions:
            position, rng_state = positions.get(row.name, (0, None))
            rng = rng_from_json(rng_state) if rng_state is not None else new_stream(settings.seed, row.name)
            self.traces.append(GeneratedTrace(
                row, specs[row.name], length=settings.nbinputs[row.input_kind], interval_us=interval_us,
                incont=settings.incont, outcont=settings.outcont, rng=rng, position=position))
        self._by_name = {t.name: t for t in self.traces}
        self._last_positions: tuple | None = None
        self._last_checkpoint_s = monotonic_s()
        self.last_path: Path | None = None

    def _check_previous(self) -> dict[str, tuple[int, list]]:
        previous, s = self.previous, self.settings
        if previous is None:
            return {}
        where = f"{s.statedir}/gen-{previous.number:08d}{genstate.SUFFIX}"
        hint = (f"; to start from scratch, delete {s.statedir} (or set another generation:statedir) "
                "and give the new generation another experiment:name")
        if s.experiment is not None and s.experiment != previous.experiment:
            raise GenerationError(f"{where} continues experiment {previous.experiment!r}, "
                                  f"but experiment:name is {s.experiment!r}{hint}")
        for what, theirs, ours in (("seed", previous.seed, s.seed), ("nbinputs", previous.nbinputs, s.nbinputs),
                                   ("functions or storage parameters", previous.fingerprint, self.fingerprint)):
            if theirs != ours:
                detail = "" if what.startswith("functions") else f" ({theirs!r} there, {ours!r} now)"
                raise GenerationError(f"{where}: the {what} changed since the checkpoint{detail}: "
                                      f"resuming would not give the same dataset{hint}")
        return {t.function: (t.position, t.rng_state) for t in previous.traces}

    @property
    def complete(self) -> bool:
        return all(t.position >= t.length for t in self.traces)

    @property
    def planned(self) -> int:
        return sum(t.length for t in self.traces)

    @property
    def recorded(self) -> int:
        return sum(t.position for t in self.traces)

    @property
    def remaining(self) -> int:
        return sum(t.remaining for t in self.traces)

    # ------------------------------------------------------------------ the database

    def reconcile(self, conn, experiment_id: int) -> dict:
        """Before sending anything: drop unfinished rows, skip runs recorded beyond the positions.

        Raises :class:`GenerationError` when the database lacks runs the checkpoint counts as recorded.
        """
        positions = {t.name: t.position for t in self.traces}
        found = experiments.reconcile_generation(conn, experiment_id, positions, list(CONFIRMED_STATUSES),
                                                 list(UNCONFIRMED_STATUSES))
        if not found.consistent:
            missing = [(t.name, t.position, found.recorded.get(t.name, 0)) for t in self.traces
                       if found.recorded.get(t.name, 0) != t.position]
            name, position, count = missing[0]
            raise GenerationError(
                f"the checkpoint says the first {position} runs of {name!r} are recorded in experiment "
                f"{self.experiment!r}, the database has {count} ({len(missing)} traces differ): is it the "
                f"right database? To start from scratch, delete {self.settings.statedir}")
        beyond, deleted = found.beyond, found.deleted
        for name, seq in beyond:
            if name in self._by_name:
                self._by_name[name].skip([seq])
        if self.previous is not None:
            log.info("resuming experiment %r from %s: %d of %d invocations recorded at the checkpoint, %d more "
                     "recorded after it (kept), %d unfinished runs dropped (re-run)", self.experiment,
                     f"gen-{self.previous.number:08d}{genstate.SUFFIX}", sum(positions.values()), self.planned,
                     len(beyond), deleted)
        return {"deleted": deleted, "recorded_after_checkpoint": len(beyond)}

    # ------------------------------------------------------------------ confirmations and checkpoints

    def on_stored(self, invocation: PlannedInvocation, status: RunStatus) -> None:
        """The pipeline committed the final row of ``invocation`` (called in its main loop)."""
        if status.value in CONFIRMED_STATUSES:
            trace = self._by_name.get(invocation.trace_name)
            if trace is not None:
                trace.confirm(invocation.seq)
        if self._monotonic() - self._last_checkpoint_s >= self.settings.checkpoint_interval_s:
            self.checkpoint("periodic", force=False)

    def checkpoint(self, reason: str, *, force: bool = True) -> Path | None:
        """Write the positions and random states (unless unchanged and not ``force``)."""
        self._last_checkpoint_s = self._monotonic()
        positions = tuple(t.position for t in self.traces)
        if not force and positions == self._last_positions:
            return None
        s = self.settings
        state = genstate.GenerationState(
            experiment=self.experiment, seed=s.seed, nbinputs=dict(s.nbinputs), fingerprint=self.fingerprint,
            interinvocationtime_s=s.interinvocationtime_s, traces=tuple(t.state() for t in self.traces),
            reason=reason, written_at_epoch_s=self._now())
        self.last_path = genstate.write(s.statedir, state)
        self._last_positions = positions
        log.info("checkpoint %s (%s): %d of %d invocations recorded", self.last_path.name, reason,
                 state.recorded, self.planned)
        return self.last_path
