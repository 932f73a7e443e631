"""Typed records written to the dataset (one frozen record per fact; ``None`` = not known/measured)."""

from __future__ import annotations

import enum
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from faasload.monitor_protocol import PeakSource


class RunStatus(str, enum.Enum):
    """Where a planned invocation stands; all but PLANNED and SENT are terminal.

    The one list of statuses: the schema's CHECK constraint, the summary's error count,
    the generator's resume rule and the table in ``docs/dataset.md`` derive from it.
    """

    PLANNED = "planned"
    SENT = "sent"
    SUCCESS = "success"
    APPLICATION_ERROR = "application_error"
    DEVELOPER_ERROR = "developer_error"
    INTERNAL_ERROR = "internal_error"
    THROTTLED = "throttled"
    HTTP_ERROR = "http_error"
    CONNECTION_ERROR = "connection_error"
    LOST = "lost"
    CANCELLED = "cancelled"
    STORE_ERROR = "store_error"

    @property
    def terminal(self) -> bool:
        return self not in (RunStatus.PLANNED, RunStatus.SENT)

    @property
    def error(self) -> bool:
        """Counted as an error in the summary: terminal, neither a success nor a cancellation."""
        return self.terminal and self not in (RunStatus.SUCCESS, RunStatus.CANCELLED)

    @property
    def confirmed(self) -> bool:
        """The platform's answer is recorded for good: a resumed generation does not run it again."""
        return self.terminal and self not in (RunStatus.LOST, RunStatus.CANCELLED)

    @property
    def meaning(self) -> str:
        return _STATUS_MEANINGS[self]

    @classmethod
    def from_status_code(cls, status_code: int) -> RunStatus:
        """From an activation's statusCode (0-3), as in user events and stored records."""
        return {0: cls.SUCCESS, 1: cls.APPLICATION_ERROR, 2: cls.DEVELOPER_ERROR,
                3: cls.INTERNAL_ERROR}[status_code]

    @classmethod
    def from_response_status(cls, status: str) -> RunStatus:
        """From an activation record's ``response.status`` text."""
        return {"success": cls.SUCCESS, "application error": cls.APPLICATION_ERROR,
                "action developer error": cls.DEVELOPER_ERROR,
                "whisk internal error": cls.INTERNAL_ERROR}[status]


_STATUS_MEANINGS = {
    RunStatus.PLANNED: "not used by the injector (rows are created when sent)",
    RunStatus.SENT: "accepted by the platform (202), waiting for the activation record",
    RunStatus.SUCCESS: "record `response.status` = `success`",
    RunStatus.APPLICATION_ERROR: "`application error`: the action returned `{\"error\": ...}`",
    RunStatus.DEVELOPER_ERROR: "`action developer error`: crash, timeout, out of memory, bad output",
    RunStatus.INTERNAL_ERROR: "`whisk internal error`",
    RunStatus.THROTTLED: "the invoke was answered 429 (after the configured retries)",
    RunStatus.HTTP_ERROR: "the invoke was answered another non-2xx status (404: action missing, 5xx...)",
    RunStatus.CONNECTION_ERROR: "the API host could not be reached",
    RunStatus.LOST: "sent, but no record by `completion:final_deadline_s` (or the loader was stopped twice): "
                    "`status_reason` says what was tried",
    RunStatus.CANCELLED: "never sent: the loader was stopped first",
    RunStatus.STORE_ERROR: "the database refused this run's data (a value it cannot hold): `status_reason` gives "
                           "its error and the status the run had; the sending fields are kept",
}


class ExperimentState(str, enum.Enum):
    """Where an experiment stands (``experiments.state``); all but RUNNING are final.

    The one list of states: the schema's CHECK constraint and the table in
    ``docs/dataset.md`` derive from it.
    """

    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    CRASHED = "crashed"

    @property
    def meaning(self) -> str:
        return _STATE_MEANINGS[self]


_STATE_MEANINGS = {
    ExperimentState.RUNNING: "a loader is running it (or died without a word: the next start, or "
                             "`python -m loader --recover NAME`, makes it `crashed`)",
    ExperimentState.FINISHED: "every trace was replayed to its end (`summary.trace_errors` lists the traces that "
                              "could not be read to their end)",
    ExperimentState.STOPPED: "stopped before the end, by a signal or an internal error (`summary.stopped`, "
                             "`summary.failure`); what was sent is recorded",
    ExperimentState.CRASHED: "the loader died (SIGKILL, power cut); the recovery completed its `sent` runs and "
                             "counted what was never sent (`summary.recovery`)",
}


def state_table() -> str:
    """The Markdown table of experiment states in ``docs/dataset.md`` (a test keeps the two equal)."""
    lines = ["| state | meaning |", "|---|---|"]
    lines += [f"| `{state.value}` | {state.meaning} |" for state in ExperimentState]
    return "\n".join(lines)


def status_table() -> str:
    """The Markdown table of statuses in ``docs/dataset.md`` (a test keeps the two equal)."""
    lines = ["| status | terminal | error | meaning |", "|---|---|---|---|"]
    for status in RunStatus:
        lines.append(f"| `{status.value}` | {'yes' if status.terminal else 'no'} | "
                     f"{'yes' if status.error else 'no'} | {status.meaning} |")
    return "\n".join(lines)


def peak_source_table() -> str:
    """The Markdown table of ``runs.kernel_peak_source`` values in ``docs/dataset.md`` (a test
    keeps the two equal)."""
    lines = ["| kernel_peak_source | meaning |", "|---|---|"]
    lines += [f"| `{source.value}` | {source.meaning} |" for source in PeakSource]
    return "\n".join(lines)


_Row = TypeVar("_Row")


def _pickled_as_arguments(cls: type[_Row]) -> type[_Row]:
    """Pickle instances as their constructor's arguments: the rows cross a pipe to the store
    writer's process by the hundred thousand, and the dataclass's own ``__getstate__`` looks its
    fields up on every call (a completion's update and samples: 14.5 µs to pickle and unpickle,
    5.5 µs this way)."""
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    getter = operator.attrgetter(*names)
    if len(names) == 1:
        def reduce(self: Any) -> tuple:
            return cls, (getter(self),)
    else:
        def reduce(self: Any) -> tuple:
            return cls, getter(self)
    cls.__reduce__ = reduce  # type: ignore[method-assign]
    return cls


@_pickled_as_arguments
@dataclass(frozen=True, slots=True)
class RunKey:
    """The natural key of a run: one planned invocation of one trace of one experiment."""

    experiment_id: int
    trace_name: str
    seq: int


@_pickled_as_arguments
@dataclass(frozen=True, slots=True)
class RunUpdate:
    """What is known of a run at one moment; written as an idempotent upsert.

    Fields left ``None`` keep their stored value; a terminal status is never
    replaced by a non-terminal one.  Times are epoch ms (``start_ms``/``end_ms``)
    or µs offsets from the experiment start (``*_offset_us``).
    """

    key: RunKey
    user_name: str
    action_name: str
    planned_offset_us: int
    status: RunStatus
    input_object: str | None = None
    sent_offset_us: int | None = None
    lateness_us: int | None = None
    status_reason: str | None = None
    invoke_http_status: int | None = None
    invoke_attempts: int | None = None
    activation_id: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    duration_ms: int | None = None
    wait_time_ms: int | None = None
    init_time_ms: int | None = None
    cold_start: bool | None = None
    kind: str | None = None
    memory_limit_mb: int | None = None
    response_size_bytes: int | None = None
    output_size_bytes: int | None = None
    extract_ms: float | None = None
    transform_ms: float | None = None
    load_ms: float | None = None
    result_error: str | None = None
    resources_status: str | None = None
    resources_reason: str | None = None
    invoker: str | None = None
    kernel_peak_memory_bytes: int | None = None
    kernel_peak_source: str | None = None


#: Columns of ``runs`` that a :class:`RunUpdate` sets, in order.
RUN_COLUMNS = ("experiment_id", "trace_name", "seq") + tuple(
    f.name for f in fields(RunUpdate) if f.name != "key")


@_pickled_as_arguments
@dataclass(frozen=True, slots=True)
class RunParameters:
    """The parameters an invocation was sent with (values as sent, in text)."""

    key: RunKey
    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """One monitor sample: epoch µs, memory in bytes, CPU in ns since the window's first sample,
    RSS + mapped files in bytes.  ``None``: not measured."""

    sampled_at_us: int
    memory_bytes: int | None
    cpu_ns: int | None
    rss_mapped_bytes: int | None = None


@_pickled_as_arguments
@dataclass(frozen=True, slots=True)
class ResourceSamples:
    """An activation's samples as columns (the fields of :class:`ResourceSample`, one tuple each,
    of one length): as the monitor answers them (batch version 2) and as ``run_samples`` stores
    them, one array per field; a 1 s activation has ~100 samples, and an object per sample costs
    more than all else on their way (docs/performance.md).  Iterating gives :class:`ResourceSample`."""

    sampled_at_us: tuple[int, ...]
    memory_bytes: tuple[int | None, ...]
    cpu_ns: tuple[int | None, ...]
    rss_mapped_bytes: tuple[int | None, ...]

    @classmethod
    def of(cls, samples: Iterable[ResourceSample]) -> ResourceSamples:
        rows = [(s.sampled_at_us, s.memory_bytes, s.cpu_ns, s.rss_mapped_bytes) for s in samples]
        if not rows:
            return NO_SAMPLES
        dates, memory, cpu, rss = zip(*rows)
        return cls(dates, memory, cpu, rss)

    def __len__(self) -> int:
        return len(self.sampled_at_us)

    def __iter__(self) -> Iterator[ResourceSample]:
        return map(ResourceSample, self.sampled_at_us, self.memory_bytes, self.cpu_ns, self.rss_mapped_bytes)

    def __getitem__(self, index: int) -> ResourceSample:
        return ResourceSample(self.sampled_at_us[index], self.memory_bytes[index], self.cpu_ns[index],
                              self.rss_mapped_bytes[index])


NO_SAMPLES = ResourceSamples((), (), (), ())


@_pickled_as_arguments
@dataclass(frozen=True, slots=True)
class RunResources:
    """The monitor's samples of one activation's container."""

    key: RunKey
    samples: ResourceSamples


@dataclass(frozen=True, slots=True)
class ExperimentRow:
    """What the ``experiments`` table says of one experiment."""

    experiment_id: int
    name: str
    mode: str
    state: ExperimentState
    runs: int
    config: dict | None = None
    summary: dict | None = None
    start_epoch_us: int | None = None       # None until its pipeline started
    started_at_epoch_us: int | None = None  # when the row was created


@dataclass(frozen=True, slots=True)
class FunctionRow:
    """One row of ``functions`` (from a wskdeploy manifest)."""

    name: str
    package: str | None = None
    runtime: str | None = None
    image: str | None = None
    code_path: str | None = None
    main: str | None = None
    memory_mb: int | None = None
    timeout_ms: int | None = None
    log_size_mb: int | None = None
    concurrency: int | None = None
    input_kind: str | None = None
    parameter_specs: tuple = ()
    #: The action's default parameters (wskdeploy ``inputs``), sorted by name: ``((name, value), ...)``.
    inputs: tuple[tuple[str, Any], ...] = ()
    manifest_path: str | None = None
