"""The loader's client of the monitor's measurement socket (docs/monitor.md, Measurement socket).

:meth:`MonitorClient.samples_for_activation` never raises on monitor trouble and never takes
longer than ``timeout_s``: every outcome is a :class:`MonitorAnswer` whose ``status`` goes to
``runs.resources_status`` and whose samples go to ``resources``.
:meth:`MonitorClient.samples_for_activations` asks for many activations in one batch query (one
connection, one answer), with the same guarantees, in batch version 2 (samples as columns); a
monitor that speaks only version 1 is asked in version 1 from then on, and one that does not speak
batches one by one.

Units of the samples (:class:`loader.storage.rows.ResourceSamples`): ``sampled_at_us`` epoch µs,
``memory_bytes`` the cgroup's memory usage, ``cpu_ns`` cumulative CPU since the first sample of
the answer (the last sample before the activation started), ``rss_mapped_bytes`` RSS + mapped
files.  ``None`` = not measured.
"""

from __future__ import annotations

import enum
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from faasload.monitor_protocol import (
    BATCH_VERSION,
    MAX_BATCH_QUERIES,
    ActivationAnswer,
    ActivationQuery,
    BatchAnswer,
    BatchQuery,
    ErrorAnswer,
    ErrorCode,
    KernelPeak,
    ProtocolError,
    Samples,
    WindowQuery,
    encode_query,
    parse_answer,
)
from loader.storage.rows import NO_SAMPLES, ResourceSamples

log = logging.getLogger(__name__)

#: The longest answer read (a 10-minute window at 10 ms is about 5 MB).
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class ResourcesStatus(str, enum.Enum):
    """What became of an activation's resources (stored in ``runs.resources_status``)."""

    OK = "ok"                      # samples recorded
    EMPTY = "empty"                # the monitor knows the activation but has no sample in its window
    UNKNOWN = "unknown"            # the monitor knows neither the activation nor its container
    AMBIGUOUS = "ambiguous"        # the monitor cannot tell which container ran it
    MONITOR_DOWN = "monitor_down"  # no answer (socket absent, refused, timed out), or the monitor was down when it started
    ERROR = "error"                # the monitor refused the request, or answered nonsense
    PENDING = "pending"            # the row was written before the answer came (completion:resources_wait_s)


@dataclass(frozen=True, slots=True)
class MonitorAnswer:
    samples: ResourceSamples
    status: ResourcesStatus
    reason: str = ""
    #: The kernel's peak of the activation's container (None: the monitor did not say).
    kernel_peak: KernelPeak | None = None
    #: The invoker whose monitor knew the activation, when a router of several monitors had to ask
    #: them all (no user event named it; :mod:`loader.monitor_endpoints`).
    invoker: str | None = None


_STATUS_OF_ERROR = {
    ErrorCode.UNKNOWN_ACTIVATION: ResourcesStatus.UNKNOWN,
    ErrorCode.UNKNOWN_CONTAINER: ResourcesStatus.UNKNOWN,
    ErrorCode.AMBIGUOUS: ResourcesStatus.AMBIGUOUS,
    ErrorCode.BAD_REQUEST: ResourcesStatus.ERROR,
    ErrorCode.TOO_LARGE: ResourcesStatus.ERROR,
    ErrorCode.MONITOR_DOWN: ResourcesStatus.MONITOR_DOWN,
}


@dataclass(frozen=True, slots=True)
class ResourcesQuery:
    """One activation asked in a batch, and the invoker that ran it (its user event's ``source``:
    only a router of several monitors uses it)."""

    query: ActivationQuery
    source: str | None = None


class MonitorDown(Exception):
    pass


def to_records(samples: Samples) -> ResourceSamples:
    """The monitor's samples as the loader stores them (dates in epoch µs)."""
    return ResourceSamples(tuple([round(date_s * 1_000_000) for date_s in samples.dates_s]), samples.memory_bytes,
                           samples.cpu_ns, samples.rss_mapped_bytes)


class MonitorClient:
    """The monitor's measurement socket (UNIX); :class:`loader.monitor_endpoints.TcpMonitorClient` is the TCP one."""

    def __init__(self, socket_path: str | Path, timeout_s: float = 2.0):
        self.socket_path = str(socket_path)
        self.timeout_s = timeout_s
        self._warned_batch = False
        #: The batch version asked: 1 from the first time the monitor refused version 2.
        self._batch_version = BATCH_VERSION

    def samples_for_activation(self, activation_id: str, *, container: str | None = None,
                               start_s: float | None = None, end_s: float | None = None,
                               namespace: str | None = None, action: str | None = None,
                               kind: str | None = None, source: str | None = None) -> MonitorAnswer:
        """The samples of one activation.  ``namespace`` and ``action`` (the activation record's
        ``namespace`` and ``name``, and its ``kind`` for prewarmed stem cells) with ``start_s`` and ``end_s`` let the monitor find the
        container when no notice bound the activation (attribution, docs/monitor.md).  When the
        monitor does not know the activation but ``container``, ``start_s`` and ``end_s`` are
        given, falls back to a window query.  ``source`` (the invoker that ran it) only matters to a
        router of several monitors (:mod:`loader.monitor_endpoints`)."""
        deadline_s = time.monotonic() + self.timeout_s
        try:
            query = ActivationQuery(activation_id, namespace, action,
                                    start_ms=None if start_s is None else round(start_s * 1000),
                                    end_ms=None if end_s is None else round(end_s * 1000), kind=kind)
            answer = self._ask(encode_query(query), deadline_s)
            if (isinstance(answer, ErrorAnswer) and answer.code is ErrorCode.UNKNOWN_ACTIVATION
                    and container is not None and start_s is not None and end_s is not None):
                answer = self._ask(encode_query(WindowQuery(container, start_s, end_s)), deadline_s)
            return _interpret(answer)
        except MonitorDown as exc:
            log.debug("monitor down for activation %s: %s", activation_id, exc)
            return MonitorAnswer(NO_SAMPLES, ResourcesStatus.MONITOR_DOWN, str(exc))
        except ProtocolError as exc:
            log.warning("monitor answered nonsense for activation %s: %s", activation_id, exc)
            return MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, f"bad answer: {exc}")
        except Exception as exc:  # never let the monitor break the loader  # noqa: BLE001
            log.error("monitor query for activation %s failed unexpectedly", activation_id, exc_info=True)
            return MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, f"{type(exc).__name__}: {exc}")

    def samples_for_activations(self, queries: list[ResourcesQuery]) -> list[MonitorAnswer]:
        """The answers to ``queries``, in their order, asked in batches of at most
        :data:`MAX_BATCH_QUERIES` (each within ``timeout_s``).  Never raises on monitor trouble."""
        answers: list[MonitorAnswer] = []
        for first in range(0, len(queries), MAX_BATCH_QUERIES):
            answers += self._batch([q.query for q in queries[first:first + MAX_BATCH_QUERIES]])
        return answers

    def _batch(self, queries: list[ActivationQuery]) -> list[MonitorAnswer]:
        try:
            version = self._batch_version
            answer = self._ask(encode_query(BatchQuery(tuple(queries), version)), time.monotonic() + self.timeout_s)
        except MonitorDown as exc:
            log.debug("monitor down for a batch of %d activations: %s", len(queries), exc)
            return [MonitorAnswer(NO_SAMPLES, ResourcesStatus.MONITOR_DOWN, str(exc))] * len(queries)
        except ProtocolError as exc:
            log.warning("monitor answered nonsense to a batch of %d activations: %s", len(queries), exc)
            return [MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, f"bad answer: {exc}")] * len(queries)
        except Exception as exc:  # never let the monitor break the loader  # noqa: BLE001
            log.error("monitor batch query failed unexpectedly", exc_info=True)
            return [MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, f"{type(exc).__name__}: {exc}")] * len(queries)
        if isinstance(answer, BatchAnswer):
            if len(answer.answers) != len(queries):
                reason = f"bad answer: {len(answer.answers)} answers to a batch of {len(queries)} queries"
                log.warning("monitor: %s", reason)
                return [MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, reason)] * len(queries)
            return [_interpret(a) for a in answer.answers]
        if isinstance(answer, ErrorAnswer) and answer.code is ErrorCode.TOO_LARGE and len(queries) > 1:
            half = len(queries) // 2  # longer than the monitor's sockets:max_message_bytes: in two halves
            return self._batch(queries[:half]) + self._batch(queries[half:])
        if isinstance(answer, ErrorAnswer) and answer.code is ErrorCode.BAD_REQUEST and version > 1:
            self._batch_version = 1   # a monitor of batch version 1 only: asked in version 1 from now on
            log.info("the monitor at %s refused a batch of version %d (%s): asking in version 1",
                     self.socket_path, version, answer.error)
            return self._batch(queries)
        if isinstance(answer, ErrorAnswer) and answer.code is ErrorCode.BAD_REQUEST:
            if not self._warned_batch:
                self._warned_batch = True
                log.info("the monitor at %s refused a batch query (%s): asking it one activation at a time",
                         self.socket_path, answer.error)
            return [self._one(q) for q in queries]
        reason = f"bad answer: a batch answered with {type(answer).__name__}"
        return [MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, reason)] * len(queries)

    def _one(self, query: ActivationQuery) -> MonitorAnswer:
        return self.samples_for_activation(
            query.activation, namespace=query.namespace, action=query.action, kind=query.kind,
            start_s=None if query.start_ms is None else query.start_ms / 1000,
            end_s=None if query.end_ms is None else query.end_ms / 1000)

    def samples_for_window(self, container: str, start_s: float, end_s: float) -> MonitorAnswer:
        """The samples of a container in [start_s, end_s] (the original FaaSLoad query)."""
        try:
            answer = self._ask(encode_query(WindowQuery(container, start_s, end_s)),
                               time.monotonic() + self.timeout_s)
            return _interpret(answer)
        except MonitorDown as exc:
            return MonitorAnswer(NO_SAMPLES, ResourcesStatus.MONITOR_DOWN, str(exc))
        except ProtocolError as exc:
            return MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, f"bad answer: {exc}")
        except Exception as exc:  # never let the monitor break the loader  # noqa: BLE001
            log.error("monitor query for container %s failed unexpectedly", container, exc_info=True)
            return MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, f"{type(exc).__name__}: {exc}")

    def _connect(self, deadline_s: float) -> socket.socket:
        """A connected socket, ready for the request (:class:`MonitorDown` when nobody listens)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(_remaining(deadline_s))
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise MonitorDown(f"{self.socket_path}: {exc.strerror}") from None
        except BaseException:
            sock.close()
            raise
        return sock

    def _ask(self, request: bytes, deadline_s: float):
        sock = None
        try:
            sock = self._connect(deadline_s)
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            chunks, size = [], 0
            while True:
                sock.settimeout(_remaining(deadline_s))
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise ProtocolError(f"answer longer than {MAX_ANSWER_BYTES} bytes")
        except TimeoutError:
            raise MonitorDown(f"{self.socket_path}: no answer within {self.timeout_s} s") from None
        except OSError as exc:
            raise MonitorDown(f"{self.socket_path}: {exc}") from None
        finally:
            if sock is not None:
                sock.close()
        if not chunks:
            raise MonitorDown(f"{self.socket_path}: connection closed without an answer")
        return parse_answer(b"".join(chunks))


def _remaining(deadline_s: float) -> float:
    remaining = deadline_s - time.monotonic()
    if remaining <= 0:
        raise TimeoutError()
    return remaining


def _interpret(answer) -> MonitorAnswer:
    if isinstance(answer, ErrorAnswer):
        return MonitorAnswer(NO_SAMPLES, _STATUS_OF_ERROR[answer.code], answer.error)
    if isinstance(answer, BatchAnswer):
        return MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, "bad answer: a batch answer to one query")
    samples = answer.samples if isinstance(answer, ActivationAnswer) else answer
    kernel_peak = answer.kernel_peak if isinstance(answer, ActivationAnswer) else None
    if not samples:
        return MonitorAnswer(NO_SAMPLES, ResourcesStatus.EMPTY, "no sample in the activation's window", kernel_peak)
    return MonitorAnswer(to_records(samples), ResourcesStatus.OK, kernel_peak=kernel_peak)
