"""What every invoker pool shares: the role the pipeline sees, and how an answer is recorded.

The pipeline submits the scheduler's due invocations to an :class:`InvokerPool`; two
implementations exist: :class:`loader.sending.threads.InvokerPool` (threads in the
scheduler's process) and :class:`loader.sending.processes.ProcessInvokerPool` (sender
processes, the default).  Both record through the functions below, so a row means
the same whichever sent it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Protocol

from loader.completion.tracker import CompletionTracker
from loader.plan import PlannedInvocation
from loader.platform.client import InvokeOutcome, InvokeStatus
from loader.platform.keys import UserKey
from loader.scheduler import Dispatch
from loader.storage.recorder import Recorder

if TYPE_CHECKING:
    from loader.sending.retries import Retries

log = logging.getLogger(__name__)

CANCEL_REASON = "the loader was stopped before this invocation was sent"


class InvokerPool(Protocol):
    """Sends due invocations without ever blocking the scheduler."""

    #: How long before its planned time an invocation may be submitted (the pool then sends it
    #: at that time); 0: submitted when due, sent at once.
    lead_s: float

    def start(self) -> None:
        """Start sending; returns once the pool accepts submissions."""

    def submit(self, item: Dispatch) -> None:
        """The scheduler's dispatch: queue ``item`` for sending at its planned time (now, if
        ``lead_s`` is 0 or the time has passed); never blocks."""

    def flush(self) -> None:
        """Send what the scheduler's tick submitted (called once per tick)."""

    def stop(self) -> None:
        """Record what is still queued ``cancelled`` and wait for the senders to end."""


def record_outcome(recorder: Recorder, tracker: CompletionTracker, invocation: PlannedInvocation, user: UserKey,
                   sent_s: float, start_s: float, outcome: InvokeOutcome) -> None:
    """The invoke answer: the ``sent`` row (or a terminal failure), and the activation to track."""
    recorder.sent(invocation, round((sent_s - start_s) * 1_000_000), outcome)
    if outcome.status is InvokeStatus.ACCEPTED and outcome.activation_id is not None:  # accepted has an id
        tracker.register(invocation, recorder.key(invocation), user, outcome.activation_id, sent_s)


def record_answer(recorder: Recorder, tracker: CompletionTracker, retries: Retries | None, item: Dispatch,
                  user: UserKey, sent_s: float, start_s: float, outcome: InvokeOutcome) -> None:
    """The answer to one attempt of ``item``: rescheduled when that is safe (``retries``), else recorded.

    The row counts every attempt (``invoke_attempts``) and the sending time of the first one.
    """
    if retries is not None and retries.offer(item, outcome, sent_s):
        return
    first_sent_s = item.first_sent_s if item.first_sent_s is not None else sent_s
    if item.attempt > 1:
        outcome = dataclasses.replace(outcome, attempts=item.attempt - 1 + outcome.attempts)
    record_outcome(recorder, tracker, item.invocation, user, first_sent_s, start_s, outcome)


def record_stopped(recorder: Recorder, item: Dispatch, start_s: float) -> None:
    """``item`` was not sent (again) because the run stops: ``cancelled``, or its last attempt's answer."""
    if item.previous is None:
        recorder.cancelled(item.invocation, CANCEL_REASON, dispatched=True)
        return
    sent_s = item.first_sent_s if item.first_sent_s is not None else start_s
    recorder.sent(item.invocation, round((sent_s - start_s) * 1_000_000), item.previous)


def no_key_reason(invocation: PlannedInvocation) -> str:
    return f"no key for user {invocation.user!r} (not sent)"


def record_unsent(recorder: Recorder, invocation: PlannedInvocation, offset: int, reason: str,
                  status: InvokeStatus = InvokeStatus.CONNECTION_ERROR, attempts: int = 0) -> None:
    """A terminal failure for an invocation that got no answer from the platform (to this attempt)."""
    try:
        recorder.sent(invocation, offset, InvokeOutcome(status, attempts, reason=reason))
    except Exception:  # the store failed for good: the pipeline's supervisor reports it  # noqa: BLE001
        log.exception("recording the failure of %s #%d failed", invocation.trace_name, invocation.seq)
