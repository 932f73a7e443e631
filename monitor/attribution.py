"""Which container ran an activation, when no notice bound them (issue 8; docs/monitor.md).

OpenWhisk's invoker runs one activation at a time in a container (per-container concurrency 1,
the default), unpauses the container before the activation and pauses it again ``pauseGrace``
after.  So the container that ran an activation of (namespace, action) over [start, end] is a
container named for that (namespace, action) (:mod:`faasload.openwhisk_names`) whose running
stretch (start/unpause to pause/die) contains [start, end].  Stem cells keep their
``prewarm_<kind>`` name when handed an action, so they are candidates for every action (or, when
the query names the runtime kind, for actions of that kind).

Exactly one candidate: that container.  None: ``unknown_activation``.  Several: ``ambiguous``.
The rule never guesses: a container the activation did not run in can only be chosen when the
monitor never saw the right one (not running under Docker, or not recognised by its name).

Running stretches are widened, never narrowed, when their bounds are uncertain (see
:mod:`monitor.docker_events`), and ``slack_s`` absorbs the activation record's millisecond
truncation, so the right container always qualifies; widening can only turn a unique answer
into ``ambiguous``, never into a wrong container.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

from faasload import openwhisk_names
from faasload.monitor_protocol import ActivationAnswer, ActivationQuery, ErrorCode, ProtocolError

#: Default tolerance around the activation's window (its start and end are whole milliseconds).
DEFAULT_SLACK_S = 0.002


@dataclass(frozen=True, slots=True)
class Candidate:
    """What attribution needs of a container: its Docker name and running stretches
    ``(start_s, end_s)``, epoch seconds, ``end_s`` None while it still runs."""

    container: str
    name: str
    intervals: tuple[tuple[float, float | None], ...]


class Verdict(str, enum.Enum):
    FOUND = "found"
    AMBIGUOUS = "ambiguous"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Attribution:
    verdict: Verdict
    container: str | None
    reason: str


def ran_over(intervals: Iterable[tuple[float, float | None]], start_s: float, end_s: float,
             slack_s: float) -> bool:
    """Whether one running stretch contains [start_s, end_s] (give or take ``slack_s``)."""
    for begin_s, finish_s in intervals:
        finish = math.inf if finish_s is None else finish_s
        if begin_s - slack_s <= start_s and end_s <= finish + slack_s:
            return True
    return False


def named_for(candidate: Candidate, namespace: str, action: str, kind: str | None) -> bool:
    return (openwhisk_names.is_container_of(candidate.name, namespace, action)
            or openwhisk_names.is_stem_cell(candidate.name, kind))


def attribute(candidates: Iterable[Candidate], namespace: str, action: str, start_s: float,
              end_s: float, *, slack_s: float = DEFAULT_SLACK_S, kind: str | None = None) -> Attribution:
    """The container that ran the activation of (namespace, action) over [start_s, end_s]."""
    what = f"{namespace}/{action}"
    named = [c for c in candidates if named_for(c, namespace, action, kind)]
    if not named:
        return Attribution(Verdict.MISSING, None,
                           f"no container named for {what} (suffix "
                           f"'{openwhisk_names.action_suffix(namespace, action)}') is known to the monitor")
    running = [c for c in named if ran_over(c.intervals, start_s, end_s, slack_s)]
    window = f"[{start_s:.3f}, {end_s:.3f}]"
    if not running:
        return Attribution(Verdict.MISSING, None,
                           f"none of the {len(named)} container(s) named for {what} ran without pause over {window}")
    if len(running) > 1:
        listed = ", ".join(f"{c.name} ({c.container[:12]})" for c in sorted(running, key=lambda c: c.name))
        return Attribution(Verdict.AMBIGUOUS, None,
                           f"{len(running)} containers that could run {what} were running over {window}: {listed}")
    (only,) = running
    return Attribution(Verdict.FOUND, only.container, f"{only.name} was the only one running {what} over {window}")


#: The query keys attribution needs (taken from the activation record).
HINTS = ("namespace", "action", "start_ms", "end_ms")


def answer(registry, query: ActivationQuery, *, slack_s: float = DEFAULT_SLACK_S) -> ActivationAnswer:
    """Answer a query by activation that no notice bound, from the registry's Docker names and
    running stretches; raises :class:`ProtocolError` (``unknown_activation``, ``ambiguous``)."""
    namespace, action, start_ms, end_ms = query.namespace, query.action, query.start_ms, query.end_ms
    if namespace is None or action is None or start_ms is None or end_ms is None:
        missing = [key for key in HINTS if getattr(query, key) is None]
        raise ProtocolError(f"unknown activation {query.activation}: no notice bound it to a container, and "
                            f"attribution needs {', '.join(repr(k) for k in missing)} in the query",
                            ErrorCode.UNKNOWN_ACTIVATION)
    if end_ms < start_ms:
        raise ProtocolError(f"'end_ms' ({end_ms}) is before 'start_ms' ({start_ms})")
    start_s, end_s = start_ms / 1000, end_ms / 1000
    found = attribute(registry.named_candidates(), namespace, action, start_s, end_s,
                      slack_s=slack_s, kind=query.kind)
    if found.verdict is Verdict.AMBIGUOUS:
        raise ProtocolError(f"activation {query.activation}: {found.reason}", ErrorCode.AMBIGUOUS)
    container = found.container
    if found.verdict is Verdict.MISSING or container is None:
        raise ProtocolError(f"unknown activation {query.activation}: {found.reason}", ErrorCode.UNKNOWN_ACTIVATION)
    entry = registry.containers.get(container)
    if entry is None:
        raise ProtocolError(f"activation {query.activation}: container {container} expired meanwhile",
                            ErrorCode.UNKNOWN_ACTIVATION)
    # no notice delimited it: the kernel's peak can only be the container's since its creation
    return ActivationAnswer(query.activation, container, start_s, end_s,
                            entry.buffer.window(start_s, end_s, bracket=True), entry.kernel_peak())
