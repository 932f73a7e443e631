"""What the scheduler consumes: planned invocations, pulled lazily from trace sources.

Both modes feed the same pipeline (scheduler → invoker pool → completions → store):
the injector's sources read trace files, the generator's draw fake traces from the
``functions`` table.  A source yields its invocations in planned order; the scheduler
merges all sources on one heap of absolute deadlines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from faasload.config import MAX_DURATION_S

#: The latest planned offset of a trace (366 days): beyond, a trace holds a typo, and the
#: sleeps to its deadlines would overflow.
MAX_OFFSET_US = MAX_DURATION_S * 1_000_000
LONGEST_TRACE = f"the longest trace the loader replays ({MAX_DURATION_S} s, {MAX_DURATION_S // 86400} days)"


@dataclass(frozen=True, slots=True)
class PlannedInvocation:
    """One invocation to send at ``planned_offset_us`` after the common start."""

    trace_name: str
    seq: int                                   # 0-based position in its trace
    user: str                                  # whose key invokes (file in openwhisk:authkeys)
    action: str                                # action name in the user's namespace
    planned_offset_us: int
    input_object: str | None                   # the input as named in the trace
    parameters: tuple[tuple[str, str], ...]    # as sent, storage parameters included


class TraceEnded(ValueError):
    """A trace that cannot be read any further (its file changed or vanished since it was checked).

    The scheduler ends that trace, and only it, and reports :meth:`report` in the run's summary;
    ``lost`` is how many of its planned invocations will never be sent (None: not known).
    """

    def __init__(self, message: str, *, lost: int | None = None):
        super().__init__(message)
        self.lost = lost

    def report(self) -> dict:
        return {"error": str(self), "lost": self.lost}


class TraceSource(Protocol):
    """A trace: one user running one action; yields invocations in planned order."""

    name: str

    def next_invocation(self) -> PlannedInvocation | None:
        """The next invocation, or None when the trace has ended; :class:`TraceEnded` when it cannot go on."""
        ...
