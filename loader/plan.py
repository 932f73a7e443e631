"""What the scheduler consumes: planned invocations, pulled lazily from trace sources.

Both modes feed the same pipeline (scheduler → invoker pool → completions → store):
the injector's sources read trace files, the generator's draw fake traces from the
``functions`` table.  A source yields its invocations in planned order; the scheduler
merges all sources on one heap of absolute deadlines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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


class TraceSource(Protocol):
    """A trace: one user running one action; yields invocations in planned order."""

    name: str

    def next_invocation(self) -> PlannedInvocation | None:
        """The next invocation, or None when the trace has ended."""
        ...
