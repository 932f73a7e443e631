"""Ask the monitor for the resources of one completed activation, and record the completion.

Runs on the completion side, in the thread that fetched the activation record; the
answer goes with the record to :meth:`loader.storage.recorder.Recorder.completed`
(:func:`record_completion`, shared by the pipeline and the recovery after a crash).
"""

from __future__ import annotations

import logging

from loader.completion.tracker import Pending
from loader.monitor_client import MonitorAnswer, MonitorClient, ResourcesStatus
from loader.storage.activation_fields import completion_fields
from loader.storage.database import StoreError
from loader.storage.recorder import Recorder

log = logging.getLogger(__name__)


def query_resources(monitor: MonitorClient | None, activation_id: str, record: dict | None,
                    source: str | None = None) -> MonitorAnswer | None:
    """The monitor's answer for the activation of ``record``; None without a monitor or a record.
    ``source`` is the invoker that ran it (user event), for a router of several monitors.

    Never raises: a failing client gives an ``error`` answer (the run is recorded anyway).
    """
    if monitor is None or record is None:
        return None
    try:
        fields = completion_fields(record)
        start_ms, end_ms = fields.get("start_ms"), fields.get("end_ms")
        namespace, name = record.get("namespace"), record.get("name")
        return monitor.samples_for_activation(
            activation_id, start_s=start_ms / 1000 if start_ms is not None else None,
            end_s=end_ms / 1000 if end_ms is not None else None,
            namespace=namespace if isinstance(namespace, str) else None,
            action=name if isinstance(name, str) else None,
            kind=fields.get("kind"), source=source)
    except Exception:  # the client should never raise; never lose the run for it  # noqa: BLE001
        log.exception("monitor query for activation %s failed", activation_id)
        return MonitorAnswer((), ResourcesStatus.ERROR)


def record_completion(recorder: Recorder, monitor: MonitorClient | None, pending: Pending, record: dict | None,
                      reason: str | None) -> None:
    """The terminal row of ``pending``: its record (or lost with ``reason``) and the monitor's samples.

    A bug on the way is logged with its traceback and the run still ends, lost with the error.
    """
    try:
        resources = query_resources(monitor, pending.activation_id, record, pending.source)
        recorder.completed(pending.invocation, pending.activation_id, record, reason, resources,
                           invoker=pending.source)
    except StoreError:
        raise
    except Exception as exc:  # a bug must not leave the run pending forever  # noqa: BLE001
        log.exception("recording activation %s failed", pending.activation_id)
        recorder.completed(pending.invocation, pending.activation_id, None,
                           f"loader error while recording the completion: {type(exc).__name__}: {exc}")
