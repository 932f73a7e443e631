"""What the monitor's two sockets do with a message (docs/monitor.md): notices go to the registry;
queries (by window, by activation, or a batch of them) are answered from it, or by attribution.

A bad message is logged and counted; the measurement socket answers an error object naming what
was wrong, and the monitor keeps serving.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence

from faasload.monitor_protocol import (
    ActivationAnswer,
    ActivationQuery,
    BatchAnswer,
    BatchQuery,
    ContainerNotice,
    ErrorAnswer,
    ErrorCode,
    ProtocolError,
    Samples,
    WindowQuery,
    encode_activation,
    encode_batch_answer,
    encode_error,
    encode_samples,
    parse_notification,
    parse_query,
)

from . import attribution
from .registry import Binding, Registry
from .servers import Deferred, ReadOutcome, excerpt

log = logging.getLogger(__name__)

#: How long after its end an activation no notice bound waits before its attribution (sampling periods).
TRAILING_SAMPLE_WAIT_RESOLUTIONS = 2.5
#: The longest an activation query waits for the first sample after the end of a bound
#: activation whose container is still sampled (sampling periods, from the query's arrival).
TRAILING_SAMPLE_LONGEST_WAIT_RESOLUTIONS = 10


class Handlers:
    """What the two sockets do with a message; counts what was dropped."""

    def __init__(self, registry: Registry, resolution_s: float, clock_epoch_s: Callable[[], float] = time.time,
                 attribution_slack_s: float = attribution.DEFAULT_SLACK_S, *,
                 monotonic_s: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.registry = registry
        self.resolution_s = resolution_s
        self.attribution_slack_s = attribution_slack_s
        self.epoch_s = clock_epoch_s
        self._monotonic_s = monotonic_s
        self._sleep = sleep
        #: From when the monitor sees everything (epoch s): set once its start-up discovery is done
        #: (monitor/daemon.py).  An activation that started before it has no samples of its start.
        self.watching_since_s = 0.0
        self.notifications = 0
        self.dropped_notifications = 0
        self.queries = 0
        self.batches = 0
        self.bad_queries = 0

    def notification(self, raw: bytes, outcome: ReadOutcome) -> Deferred | None:
        """Apply a notice (the notification socket's I/O thread calls it).  An activation's notice is
        applied at once; a container's lifecycle notice, which may look the container's cgroup up
        (Docker's inspect can hang), is returned as a :data:`Deferred` for a worker."""
        if outcome is ReadOutcome.COMPLETE and not raw.strip():
            log.debug("empty notification connection (probe) ignored")
            return None
        try:
            if outcome is not ReadOutcome.COMPLETE:
                raise ProtocolError(_outcome_text(outcome, raw))
            notice = parse_notification(raw)
        except ProtocolError as exc:
            self.dropped_notifications += 1
            log.warning("notification dropped: %s: %s", exc, excerpt(raw))
            return None
        self.notifications += 1
        log.debug("notification %s", notice)
        if isinstance(notice, ContainerNotice):
            return functools.partial(self.registry.apply, notice)
        self.registry.apply(notice)
        return None

    def query(self, raw: bytes, outcome: ReadOutcome) -> bytes | None:
        if outcome is ReadOutcome.COMPLETE and not raw.strip():
            log.debug("empty measurement connection (probe) closed without answer")
            return None
        try:
            if outcome is ReadOutcome.TOO_LARGE:
                raise ProtocolError(_outcome_text(outcome, raw), ErrorCode.TOO_LARGE)
            if outcome is not ReadOutcome.COMPLETE:
                raise ProtocolError(_outcome_text(outcome, raw))
            query = parse_query(raw)
            if isinstance(query, BatchQuery):
                self.batches += 1
                return encode_batch_answer(self._batch(query))  # in the version asked
            self.queries += 1
            answer = self._answer(query)
            if isinstance(answer, ActivationAnswer):
                return encode_activation(answer)
            return encode_samples(answer)
        except ProtocolError as exc:
            if exc.code in (ErrorCode.BAD_REQUEST, ErrorCode.TOO_LARGE):
                self.bad_queries += 1
                log.warning("bad measurement request: %s: %s", exc, excerpt(raw))
            else:
                log.info("measurement request: %s", exc)
            return encode_error(exc.code, str(exc))

    def _answer(self, query: WindowQuery | ActivationQuery, *,
                wait: bool = True) -> Samples | ActivationAnswer:
        """The answer to one query (raises :class:`ProtocolError`); ``wait``: for the sample after a recent end."""
        if isinstance(query, WindowQuery):
            return self.registry.window(query.container, query.start_s, query.end_s)
        if wait:
            self._wait_for_trailing_samples([query])
        binding = self._binding(query)   # after the wait: with an end notice that came meanwhile
        self._check_watched(query, binding)
        if binding is not None:
            return self.registry.activation(query.activation, _hinted_end_s(query), binding=binding)
        # no notice bound it: attribution by name and running stretch (monitor/attribution.py)
        return attribution.answer(self.registry, query, slack_s=self.attribution_slack_s)

    def _binding(self, query: ActivationQuery) -> Binding | None:
        """The activation's binding as it is now; None when no notice bound it."""
        try:
            return self.registry.activation_binding(query.activation)
        except ProtocolError:
            return None

    def _check_watched(self, query: ActivationQuery, binding: Binding | None) -> None:
        """Refuse (``monitor_down``) an activation that started before the monitor watched: it ran,
        at least in part, while the monitor was down or still starting, so samples of its start
        cannot exist.  Its start: its start notice (``binding``), else the query's ``start_ms``."""
        start_s = None if binding is None else binding.start_s
        if start_s is None and query.start_ms is not None:
            start_s = query.start_ms / 1000
        if start_s is not None and start_s < self.watching_since_s:
            raise ProtocolError(f"activation {query.activation} started at {start_s:.3f}, before the monitor "
                                f"watched (since {self.watching_since_s:.3f}): it was down or starting",
                                ErrorCode.MONITOR_DOWN)

    def _batch(self, batch: BatchQuery) -> BatchAnswer:
        """Every query of the batch, after one wait for the samples after their ends."""
        self.queries += len(batch.queries)
        self._wait_for_trailing_samples(batch.queries)
        answers: list[Samples | ActivationAnswer | ErrorAnswer] = []
        for query in batch.queries:
            try:
                answers.append(self._answer(query, wait=False))
            except ProtocolError as exc:
                if exc.code is ErrorCode.BAD_REQUEST:
                    self.bad_queries += 1
                answers.append(ErrorAnswer(exc.code, str(exc)))
            except Exception:  # a bug on one query must not cost the others their answer  # noqa: BLE001
                log.exception("measurement batch: answering %s failed", query)
                answers.append(ErrorAnswer(ErrorCode.BAD_REQUEST, "internal error in the monitor (see its log)"))
        return BatchAnswer(tuple(answers), batch.version)

    def _wait_for_trailing_samples(self, queries: Sequence[WindowQuery | ActivationQuery]) -> None:
        """Let the sampler take, for each activation that ended, the first sample after its end.

        An activation a notice bound waits until its container has a sample dated at or after its
        end, or is no longer sampled (paused, removed): checked every quarter of a sampling period,
        for at most :data:`TRAILING_SAMPLE_LONGEST_WAIT_RESOLUTIONS` periods (a sampler late on a
        loaded machine).  Most answers wait under one period: the next sample comes on average half
        a period after the end.  Before, every query waited 2.5 periods after the latest end, and
        a sampler later than that left the answer without its sample after the end.  An activation
        no notice bound (answered by attribution) waits :data:`TRAILING_SAMPLE_WAIT_RESOLUTIONS`
        periods after its end: which container answers for it is not known yet."""
        waits: list[tuple[float, tuple[str, ...]]] = []
        unbound_end_s = None
        for query in queries:
            if not isinstance(query, ActivationQuery):
                continue
            binding = self._binding(query)
            end_s = None if binding is None else binding.end_s
            if end_s is None:
                end_s = _hinted_end_s(query)
            if end_s is None:
                continue
            if binding is None:
                unbound_end_s = end_s if unbound_end_s is None else max(unbound_end_s, end_s)
            else:
                waits.append((end_s, binding.containers))
        deadline_s = self._monotonic_s() + TRAILING_SAMPLE_LONGEST_WAIT_RESOLUTIONS * self.resolution_s
        if unbound_end_s is not None:
            sleep_s = unbound_end_s + TRAILING_SAMPLE_WAIT_RESOLUTIONS * self.resolution_s - self.epoch_s()
            if 0 < sleep_s <= 1.0:
                self._sleep(sleep_s)
        poll_s = self.resolution_s / 4
        while True:
            waits = [(end_s, containers) for end_s, containers in waits
                     if any(self.registry.awaits_sample_after(c, end_s) for c in containers)]
            left_s = deadline_s - self._monotonic_s()
            if not waits or left_s <= 0:
                return
            self._sleep(min(poll_s, left_s))


def _hinted_end_s(query: ActivationQuery) -> float | None:
    """The end the query's record gives (``end_ms``, whole milliseconds: the end of that millisecond)."""
    return None if query.end_ms is None else (query.end_ms + 1) / 1000


def _outcome_text(outcome: ReadOutcome, raw: bytes) -> str:
    if outcome is ReadOutcome.TOO_LARGE:
        return "message longer than sockets:max_message_bytes"
    if outcome is ReadOutcome.TIMEOUT:
        return f"message incomplete after the read timeout ({len(raw)} bytes, no newline nor end of stream)"
    return f"connection failed after {len(raw)} bytes"
