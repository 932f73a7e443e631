"""What every invoker pool shares: the role the pipeline sees, and how an answer is recorded.

The pipeline submits the scheduler's due invocations to an :class:`InvokerPool`; two
implementations exist: :class:`loader.sending.threads.InvokerPool` (threads in the
scheduler's process) and :class:`loader.sending.processes.ProcessInvokerPool` (sender
processes, the default).  Both record through the functions below, so a row means
the same whichever sent it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from loader.completion.tracker import CompletionTracker
from loader.plan import PlannedInvocation
from loader.platform.client import InvokeOutcome, InvokeStatus
from loader.platform.keys import UserKey
from loader.scheduler import Dispatch
from loader.storage.recorder import Recorder

log = logging.getLogger(__name__)

CANCEL_REASON = "the loader was stopped before this invocation was sent"


class InvokerPool(Protocol):
    """Sends due invocations without ever blocking the scheduler."""

    def start(self) -> None:
        """Start sending; returns once the pool accepts submissions."""

    def submit(self, item: Dispatch) -> None:
        """The scheduler's dispatch: queue ``item`` for sending now; never blocks."""

    def flush(self) -> None:
        """Send what the scheduler's tick submitted (called once per tick)."""

    def stop(self) -> None:
        """Record what is still queued ``cancelled`` and wait for the senders to end."""


def record_outcome(recorder: Recorder, tracker: CompletionTracker, invocation: PlannedInvocation, user: UserKey,
                   sent_s: float, start_s: float, outcome: InvokeOutcome) -> None:
    """The invoke answer: the ``sent`` row (or a terminal failure), and the activation to track."""
    recorder.sent(invocation, round((sent_s - start_s) * 1_000_000), outcome)
    if outcome.status is InvokeStatus.ACCEPTED:
        tracker.register(invocation, recorder.key(invocation), user, outcome.activation_id, sent_s)


def no_key_reason(invocation: PlannedInvocation) -> str:
    return f"no key for user {invocation.user!r} (not sent)"


def record_unsent(recorder: Recorder, invocation: PlannedInvocation, offset: int, reason: str,
                  status: InvokeStatus = InvokeStatus.CONNECTION_ERROR) -> None:
    """A terminal failure for an invocation that got no answer from the platform (0 attempts)."""
    try:
        recorder.sent(invocation, offset, InvokeOutcome(status, 0, reason=reason))
    except Exception:  # the store failed for good: the pipeline's supervisor reports it  # noqa: BLE001
        log.exception("recording the failure of %s #%d failed", invocation.trace_name, invocation.seq)
