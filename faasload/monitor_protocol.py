"""The monitor's socket protocol (docs/monitor.md: Notification socket, Measurement socket), shared by every party.

Both sockets carry one JSON object per connection.  This module turns raw bytes into frozen
records and back; it does no I/O.  The loader's client, localwhisk's notifier and the invoker
wrappers import it from here.

* Notification socket: :class:`ContainerNotice` (``run``/``rm``/``pause``/``resume``) and
  :class:`ActivationNotice` (``activation_start``/``activation_end``).
* Measurement socket: :class:`WindowQuery` and :class:`ActivationQuery`; answers are a JSON list
  of samples, an activation object (with the kernel's peak, :class:`KernelPeak`), or an error
  object with a :class:`ErrorCode`.
  :class:`BatchQuery` (``{"version": 2, "batch": [query, ...]}``) asks many at once; its answer
  is :class:`BatchAnswer` (``{"version": 2, "answers": [answer, ...]}``, in the queries' order),
  in the version asked.  Version 2 gives each answer's samples as columns (``{"date": [...],
  "memory": [...], "cpu": [...], "rss_mapped": [...]}``), version 1 as one object per sample;
  single queries are answered as in version 1.  A monitor that speaks only version 1 answers a
  version-2 batch ``bad_request``, and one older than batches any batch: clients then ask in
  version 1, then one by one.

In memory, an answer's samples are :class:`Samples`, columns too: a 1 s activation sampled every
10 ms has ~100 samples, and one object per sample on the wire cost 466-553 µs per activation of
102 samples from the monitor's buffer to the loader's row, against 240-266 µs as columns
(``bench/answer_path.py``, docs/performance.md).

Parsing raises :class:`ProtocolError`, whose text says what was wrong with the message.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, overload

#: Whole-string patterns (``\Z``, not ``$``, which also matches before a trailing newline).
ACTIVATION_ID = re.compile(r"\A[0-9a-f]{32}\Z")
#: A container id or name: what Docker and localwhisk use (no slashes, no spaces).
CONTAINER_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}\Z")
#: The version of the batch messages clients of this code send (``"version"`` of a batch and its answer).
BATCH_VERSION = 2
#: The versions the monitor answers, each in its own form.
BATCH_VERSIONS = (1, 2)
#: The most queries in one batch.
MAX_BATCH_QUERIES = 1000


class ErrorCode(str, enum.Enum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_CONTAINER = "unknown_container"
    UNKNOWN_ACTIVATION = "unknown_activation"
    AMBIGUOUS = "ambiguous"
    TOO_LARGE = "too_large"
    #: the monitor was not watching when the activation started (down, or still starting)
    MONITOR_DOWN = "monitor_down"


class ProtocolError(ValueError):
    """A message that does not follow the protocol; ``code`` is what the monitor answers."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST):
        super().__init__(message)
        self.code = code


class Lifecycle(str, enum.Enum):
    RUN = "run"
    RM = "rm"
    PAUSE = "pause"
    RESUME = "resume"


class Boundary(str, enum.Enum):
    START = "activation_start"
    END = "activation_end"


@dataclass(frozen=True, slots=True)
class ContainerNotice:
    """A container changed state.  ``cgroup`` is where its cgroup lives, when the sender knows:
    one path inside the hierarchy (joined with every v1 controller mount, or the v2 root) as
    ``(("", path),)``, or one path per v1 controller as ``(("memory", p1), ("cpuacct", p2))``."""

    action: Lifecycle
    container: str
    cgroup: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True, slots=True)
class ActivationNotice:
    """An activation started or ended in a container, at ``date_s`` (epoch seconds)."""

    boundary: Boundary
    container: str
    activation: str
    date_s: float


@dataclass(frozen=True, slots=True)
class WindowQuery:
    container: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class ActivationQuery:
    """By activation id; the optional fields are hints for attribution without notices (issue 8)."""

    activation: str
    namespace: str | None = None
    action: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    kind: str | None = None          # the runtime kind (``python:3.11``): narrows stem-cell candidates


@dataclass(frozen=True, slots=True)
class BatchQuery:
    """Several queries in one message, answered in their order, in ``version`` (:data:`BATCH_VERSIONS`)."""

    queries: tuple[WindowQuery | ActivationQuery, ...]
    version: int = BATCH_VERSION


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample as answered: epoch seconds, memory usage bytes, CPU ns (relative to the first
    sample of the answer), RSS + mapped file bytes.  ``None`` = not measured."""

    date_s: float
    memory_bytes: int | None
    cpu_ns: int | None
    rss_mapped_bytes: int | None


@dataclass(frozen=True, slots=True)
class Samples:
    """An answer's samples as columns, one tuple per field of :class:`Sample`, all of one length,
    in time order.  Iterating or indexing gives :class:`Sample` records."""

    dates_s: tuple[float, ...]
    memory_bytes: tuple[int | None, ...]
    cpu_ns: tuple[int | None, ...]
    rss_mapped_bytes: tuple[int | None, ...]

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> Samples:
        rows = [(s.date_s, s.memory_bytes, s.cpu_ns, s.rss_mapped_bytes) for s in samples]
        if not rows:
            return NO_SAMPLES
        dates, memory, cpu, rss = zip(*rows)
        return cls(dates, memory, cpu, rss)

    def __len__(self) -> int:
        return len(self.dates_s)

    def __iter__(self) -> Iterator[Sample]:
        return map(Sample, self.dates_s, self.memory_bytes, self.cpu_ns, self.rss_mapped_bytes)

    @overload
    def __getitem__(self, index: int) -> Sample: ...
    @overload
    def __getitem__(self, index: slice) -> Samples: ...

    def __getitem__(self, index: int | slice) -> Sample | Samples:
        if isinstance(index, slice):
            return Samples(self.dates_s[index], self.memory_bytes[index], self.cpu_ns[index],
                           self.rss_mapped_bytes[index])
        return Sample(self.dates_s[index], self.memory_bytes[index], self.cpu_ns[index], self.rss_mapped_bytes[index])


NO_SAMPLES = Samples((), (), (), ())


class PeakSource(str, enum.Enum):
    """Which window the kernel's peak of an activation covers (docs/monitor.md, Kernel peaks)."""

    ACTIVATION = "activation"            # reset at the activation's start, read at its end
    SINCE_CREATION = "since_creation"    # the container's peak from its creation to the read
    UNAVAILABLE = "unavailable"          # no peak that covers the activation could be read

    @property
    def meaning(self) -> str:
        return _PEAK_SOURCE_MEANINGS[self]


_PEAK_SOURCE_MEANINGS = {
    PeakSource.ACTIVATION: "the kernel's counter (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`) was reset "
                           "when the activation started and read when it ended: the container's highest memory "
                           "usage during the activation",
    PeakSource.SINCE_CREATION: "the counter was not reset (v2 before Linux 6.12, a monitor not allowed to write "
                               "it, a start notice handled too late, or no notice delimited the activation): the "
                               "container's highest usage from its creation to the activation's end (or to the "
                               "query): an upper bound of the activation's peak",
    PeakSource.UNAVAILABLE: "no counter value covers the activation: no answer from the monitor, no counter "
                            "(v2 before Linux 5.19), a failed read, or a v1 counter already reset for another "
                            "activation of the same container (several at once)",
}


@dataclass(frozen=True, slots=True)
class KernelPeak:
    """The kernel's own peak of an activation's container (v1 ``memory.max_usage_in_bytes``, v2
    ``memory.peak``), in bytes, and the window it covers.  ``None`` = not measured."""

    memory_bytes: int | None
    source: PeakSource


@dataclass(frozen=True, slots=True)
class ActivationAnswer:
    activation: str
    container: str
    start_s: float | None
    end_s: float | None
    samples: Samples
    #: None: the monitor did not say (an older monitor).
    kernel_peak: KernelPeak | None = None


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    code: ErrorCode
    error: str


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """The answers of a :class:`BatchQuery`, one per query, in its order, in its ``version``."""

    answers: tuple[Samples | ActivationAnswer | ErrorAnswer, ...]
    version: int = BATCH_VERSION


# --------------------------------------------------------------------------- decoding helpers

def _decode_object(raw: bytes) -> dict[str, Any]:
    text = raw.strip()
    if not text:
        raise ProtocolError("empty message")
    try:
        value = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _string(message: Mapping[str, Any], key: str, pattern: re.Pattern | None = None) -> str:
    value = message.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"'{key}' must be a string, got {_show(value)}")
    if pattern is not None and not pattern.fullmatch(value):
        raise ProtocolError(f"'{key}' is not a valid {key} id: {_show(value)}")
    return value


def _number(message: Mapping[str, Any], key: str) -> float:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(f"'{key}' must be a number (epoch seconds), got {_show(value)}")
    return float(value)


def _optional(message: Mapping[str, Any], key: str, kind: type) -> Any:
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ProtocolError(f"'{key}' must be {'an integer' if kind is int else 'a string'}, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_keys(message: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(message) - allowed)
    if extra:
        raise ProtocolError(f"unknown key(s) {', '.join(map(repr, extra))}")


def _cgroup_path(value: Any) -> bool:
    """An absolute path that stays inside the hierarchy on its face (no ``..``, no NUL); the
    monitor still resolves it and refuses symlinks out (monitor/cgroups.py)."""
    return (isinstance(value, str) and value.startswith("/") and "\0" not in value
            and ".." not in value.split("/"))


def _cgroup_hint(value: Any) -> tuple[tuple[str, str], ...] | None:
    if value is None:
        return None
    if _cgroup_path(value):
        return (("", value),)
    if isinstance(value, dict) and value and all(isinstance(k, str) and _cgroup_path(v) for k, v in value.items()):
        return tuple(sorted(value.items()))
    raise ProtocolError("'cgroup' must be an absolute path inside the cgroup hierarchy (without '..'), or a "
                        f"mapping of controller to such a path, got {_show(value)}")


# --------------------------------------------------------------------------- notifications

def parse_notification(raw: bytes) -> ContainerNotice | ActivationNotice:
    """Parse one message of the notification socket."""
    message = _decode_object(raw)
    action = message.get("action")
    if action in {a.value for a in Lifecycle}:
        _unknown_keys(message, {"action", "container", "cgroup"})
        return ContainerNotice(Lifecycle(action), _string(message, "container", CONTAINER_ID),
                               _cgroup_hint(message.get("cgroup")))
    if action in {b.value for b in Boundary}:
        _unknown_keys(message, {"action", "container", "activation", "date"})
        return ActivationNotice(Boundary(action), _string(message, "container", CONTAINER_ID),
                                _string(message, "activation", ACTIVATION_ID), _number(message, "date"))
    known = ", ".join([a.value for a in Lifecycle] + [b.value for b in Boundary])
    raise ProtocolError(f"'action' must be one of {known}, got {_show(action)}")


def encode_notice(notice: ContainerNotice | ActivationNotice) -> bytes:
    """The wire form of a notice (what senders write, newline-terminated)."""
    if isinstance(notice, ContainerNotice):
        message: dict[str, Any] = {"action": notice.action.value, "container": notice.container}
        if notice.cgroup is not None:
            hint = dict(notice.cgroup)
            message["cgroup"] = hint[""] if list(hint) == [""] else hint
    else:
        message = {"action": notice.boundary.value, "container": notice.container,
                   "activation": notice.activation, "date": notice.date_s}
    return json.dumps(message).encode() + b"\n"


# --------------------------------------------------------------------------- queries

def parse_query(raw: bytes) -> WindowQuery | ActivationQuery | BatchQuery:
    """Parse one request of the measurement socket."""
    message = _decode_object(raw)
    if "batch" in message:
        return _batch_query(message)
    return _single_query(message)


def _single_query(message: Mapping[str, Any]) -> WindowQuery | ActivationQuery:
    if "activation" in message:
        _unknown_keys(message, {"activation", "namespace", "action", "start_ms", "end_ms", "kind"})
        return ActivationQuery(_string(message, "activation", ACTIVATION_ID),
                               _optional(message, "namespace", str), _optional(message, "action", str),
                               _optional(message, "start_ms", int), _optional(message, "end_ms", int),
                               _optional(message, "kind", str))
    if "container" in message:
        _unknown_keys(message, {"container", "start", "end"})
        query = WindowQuery(_string(message, "container", CONTAINER_ID),
                            _number(message, "start"), _number(message, "end"))
        if query.end_s < query.start_s:
            raise ProtocolError(f"'end' ({query.end_s}) is before 'start' ({query.start_s})")
        return query
    raise ProtocolError("a query needs 'activation', or 'container' with 'start' and 'end'")


def _check_version(message: Mapping[str, Any], what: str) -> int:
    version = message.get("version")
    if isinstance(version, bool) or version not in BATCH_VERSIONS:
        raise ProtocolError(f"{what} 'version' must be one of {', '.join(map(str, BATCH_VERSIONS))} (the batch "
                            f"versions this side speaks), got {_show(version)}")
    return int(version)


def _batch_query(message: Mapping[str, Any]) -> BatchQuery:
    """A batch is refused as a whole when anything in it is malformed, naming the entry."""
    _unknown_keys(message, {"version", "batch"})
    version = _check_version(message, "batch")
    entries = message["batch"]
    if not isinstance(entries, list) or not entries:
        raise ProtocolError(f"'batch' must be a non-empty list of queries, got {_show(entries)}")
    if len(entries) > MAX_BATCH_QUERIES:
        raise ProtocolError(f"'batch' holds {len(entries)} queries, more than {MAX_BATCH_QUERIES}")
    queries = []
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise ProtocolError(f"expected a query object, got {_show(entry)}")
            if "batch" in entry:
                raise ProtocolError("a batch cannot hold a batch")
            queries.append(_single_query(entry))
        except ProtocolError as exc:
            raise ProtocolError(f"batch[{index}]: {exc}") from None
    return BatchQuery(tuple(queries), version)


def _query_message(query: WindowQuery | ActivationQuery) -> dict[str, Any]:
    if isinstance(query, WindowQuery):
        return {"container": query.container, "start": query.start_s, "end": query.end_s}
    message: dict[str, Any] = {"activation": query.activation}
    for key in ("namespace", "action", "start_ms", "end_ms", "kind"):
        if getattr(query, key) is not None:
            message[key] = getattr(query, key)
    return message


def encode_query(query: WindowQuery | ActivationQuery | BatchQuery) -> bytes:
    if isinstance(query, BatchQuery):
        message = {"version": query.version, "batch": [_query_message(q) for q in query.queries]}
    else:
        message = _query_message(query)
    return json.dumps(message).encode() + b"\n"


# --------------------------------------------------------------------------- answers

def _samples_json(samples: Samples, version: int) -> Any:
    """Version 2: one list per field; version 1 (and single queries): one object per sample."""
    if version == 2:
        return {"date": samples.dates_s, "memory": samples.memory_bytes, "cpu": samples.cpu_ns,
                "rss_mapped": samples.rss_mapped_bytes}
    return [{"date": date, "memory": memory, "cpu": cpu, "rss_mapped": rss}
            for date, memory, cpu, rss in zip(samples.dates_s, samples.memory_bytes, samples.cpu_ns,
                                              samples.rss_mapped_bytes)]


def encode_samples(samples: Samples) -> bytes:
    """A window query's answer (one object per sample)."""
    return json.dumps(_samples_json(samples, 1)).encode()


def _activation_json(answer: ActivationAnswer, version: int) -> dict[str, Any]:
    message: dict[str, Any] = {"activation": answer.activation, "container": answer.container,
                               "start": answer.start_s, "end": answer.end_s,
                               "samples": _samples_json(answer.samples, version)}
    if answer.kernel_peak is not None:
        message["kernel_peak"] = {"memory": answer.kernel_peak.memory_bytes,
                                  "source": answer.kernel_peak.source.value}
    return message


def encode_activation(answer: ActivationAnswer) -> bytes:
    """An activation query's answer (one object per sample)."""
    return json.dumps(_activation_json(answer, 1)).encode()


def _error_json(code: ErrorCode, text: str) -> dict[str, Any]:
    return {"error": text, "code": code.value}


def encode_error(code: ErrorCode, text: str) -> bytes:
    return json.dumps(_error_json(code, text)).encode()


def _answer_json(answer: Samples | ActivationAnswer | ErrorAnswer, version: int) -> Any:
    if isinstance(answer, ActivationAnswer):
        return _activation_json(answer, version)
    if isinstance(answer, ErrorAnswer):
        return _error_json(answer.code, answer.error)
    return _samples_json(answer, version)


def encode_batch_answer(answer: BatchAnswer) -> bytes:
    """The batch's answer, in its version, each activation's part encoded on its own: ``json.dumps``
    holds the GIL from its start to its end, and one call for a batch of 200 answers of ~100
    samples (1 s activations) held it 17 ms (30-40 ms on a loaded machine), in which the monitor's
    sampler thread could not take its samples: rows then had gaps of 15-38 ms between samples
    (bench/completion_pipeline.py --activation-ms 1000 at 2,500/s).  One call per answer holds it
    ~0.07 ms."""
    parts = ", ".join([json.dumps(_answer_json(a, answer.version)) for a in answer.answers])
    return f'{{"version": {answer.version}, "answers": [{parts}]}}'.encode()


def _refuse_constant(name: str) -> Any:
    raise ProtocolError(f"answer holds {name}, which is not a JSON number")


def parse_answer(raw: bytes) -> Samples | ActivationAnswer | ErrorAnswer | BatchAnswer:
    """Parse the monitor's answer (for clients)."""
    text = raw.strip()
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"answer is not valid JSON: {exc}") from None
    if isinstance(value, dict) and "answers" in value:
        version = _check_version(value, "batch answer")
        answers = value["answers"]
        if not isinstance(answers, list):
            raise ProtocolError(f"batch answer 'answers' must be a list, got {_show(answers)}")
        return BatchAnswer(tuple(_answer_value(item, version) for item in answers), version)
    return _answer_value(value, 1)


def _answer_value(value: Any, version: int) -> Samples | ActivationAnswer | ErrorAnswer:
    if isinstance(value, dict) and "error" in value:
        try:
            code = ErrorCode(value.get("code"))
        except ValueError:
            raise ProtocolError(f"unknown error code {_show(value.get('code'))}") from None
        return ErrorAnswer(code, str(value["error"]))
    if isinstance(value, dict) and "activation" in value:
        start, end = value.get("start"), value.get("end")
        return ActivationAnswer(_string(value, "activation"), _string(value, "container"),
                                None if start is None else _number(value, "start"),
                                None if end is None else _number(value, "end"),
                                _samples_value(value.get("samples"), version, "activation answer 'samples'"),
                                _kernel_peak_from_json(value.get("kernel_peak")))
    return _samples_value(value, version, "answer")


def _samples_value(value: Any, version: int, what: str) -> Samples:
    if version == 2:
        if not isinstance(value, dict):
            raise ProtocolError(f"{what} must be an object of sample columns (batch version 2), got {_show(value)}")
        return _sample_columns(value, what)
    if not isinstance(value, list):
        raise ProtocolError(f"{what} must be a list of samples, got {_show(value)}")
    return Samples.of([_sample_from_json(item) for item in value])


_COLUMNS = ("date", "memory", "cpu", "rss_mapped")


def _sample_columns(value: Mapping[str, Any], what: str) -> Samples:
    _unknown_keys(value, set(_COLUMNS))
    columns = []
    for key in _COLUMNS:
        column = value.get(key)
        if not isinstance(column, list):
            raise ProtocolError(f"{what} column '{key}' must be a list, got {_show(column)}")
        columns.append(column)
    dates = columns[0]
    if any(len(column) != len(dates) for column in columns[1:]):
        raise ProtocolError(f"{what} columns differ in length: "
                            f"{', '.join(f'{k} {len(c)}' for k, c in zip(_COLUMNS, columns))}")
    if not all(type(d) is float or type(d) is int for d in dates):   # not bool: type(True) is bool
        bad = next(d for d in dates if not (type(d) is float or type(d) is int))
        raise ProtocolError(f"{what} column 'date' must hold numbers (epoch seconds), got {_show(bad)}")
    for key, column in zip(_COLUMNS[1:], columns[1:]):
        if not all(v is None or type(v) is int for v in column):
            bad = next(v for v in column if not (v is None or type(v) is int))
            raise ProtocolError(f"{what} column '{key}' must hold integers or nulls, got {_show(bad)}")
    return Samples(tuple(map(float, dates)), tuple(columns[1]), tuple(columns[2]), tuple(columns[3]))


def _sample_from_json(item: Any) -> Sample:
    if not isinstance(item, dict):
        raise ProtocolError(f"a sample must be an object, got {_show(item)}")
    values = []
    for key in ("memory", "cpu", "rss_mapped"):
        value = item.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ProtocolError(f"sample '{key}' must be an integer or null, got {_show(value)}")
        values.append(value)
    return Sample(_number(item, "date"), *values)


def _kernel_peak_from_json(value: Any) -> KernelPeak | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(f"'kernel_peak' must be an object, got {_show(value)}")
    memory = value.get("memory")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int)):
        raise ProtocolError(f"kernel_peak 'memory' must be an integer or null, got {_show(memory)}")
    try:
        source = PeakSource(value.get("source"))
    except ValueError:
        raise ProtocolError(f"kernel_peak 'source' must be one of {', '.join(s.value for s in PeakSource)}, "
                            f"got {_show(value.get('source'))}") from None
    return KernelPeak(memory, source)
