"""Ask the monitor for the resources of one completed activation.

Runs on the completion side, in the thread that fetched the activation record; the
answer goes with the record to :meth:`loader.storage.recorder.Recorder.completed`.
"""

from __future__ import annotations

import logging

from loader.monitor_client import MonitorAnswer, MonitorClient, ResourcesStatus
from loader.storage.activation_fields import completion_fields

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
