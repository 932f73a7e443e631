"""Ask the monitor for the resources of one completed activation, and record the completion.

:func:`record_with` records a completion with the monitor's answer
(:meth:`loader.storage.recorder.Recorder.completed`); :func:`record_completion` asks the monitor
first, in the calling thread (the recovery after a crash; the pipeline asks in batches,
:mod:`loader.completion.resource_batches`).
"""

from __future__ import annotations

import logging

from loader.completion.tracker import Pending
from loader.monitor_client import MonitorAnswer, MonitorClient, ResourcesStatus
from loader.storage.activation_fields import completion_fields
from loader.storage.database import StoreError
from loader.storage.recorder import Recorder
from loader.storage.rows import NO_SAMPLES, RunStatus

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
        return MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR)


def record_completion(recorder: Recorder, monitor: MonitorClient | None, pending: Pending, record: dict | None,
                      reason: str | None) -> None:
    """The terminal row of ``pending``: its record (or lost with ``reason``) and the monitor's samples,
    asked now, in this thread (the recovery after a crash; the pipeline asks in batches,
    :mod:`loader.completion.resource_batches`)."""
    try:
        resources = query_resources(monitor, pending.activation_id, record, pending.source)
    except Exception as exc:  # noqa: BLE001 (query_resources never raises; a bug must not lose the run)
        log.exception("monitor query for activation %s failed", pending.activation_id)
        resources = MonitorAnswer(NO_SAMPLES, ResourcesStatus.ERROR, f"{type(exc).__name__}: {exc}")
    record_with(recorder, pending, record, reason, resources)


def record_with(recorder: Recorder, pending: Pending, record: dict | None, reason: str | None,
                resources: MonitorAnswer | None, fields: dict | None = None) -> RunStatus | None:
    """The terminal row of ``pending`` with the monitor's answer ``resources``; its status (None when
    recording it failed).  A bug on the way is logged with its traceback and the run still ends,
    lost with the error."""
    try:
        return recorder.completed(pending.invocation, pending.activation_id, record, reason, resources,
                                  invoker=pending.source, fields=fields)
    except StoreError:
        raise
    except Exception as exc:  # a bug must not leave the run pending forever  # noqa: BLE001
        log.exception("recording activation %s failed", pending.activation_id)
        recorder.completed(pending.invocation, pending.activation_id, None,
                           f"loader error while recording the completion: {type(exc).__name__}: {exc}")
        return None
