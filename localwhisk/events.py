"""OpenWhisk user events on Kafka (docs/openwhisk-contract.md, User events): ``EventMessage`` JSON, no key.

Messages are queued and sent by one background thread with kafka-python, so an
invocation never waits on the broker; a broker that is down loses events (logged).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from .activations import ActivationRecord
from .users import Identity

if TYPE_CHECKING:
    from kafka import KafkaProducer

LOG = logging.getLogger(__name__)


def user_defined_status_code(result: Any) -> int | None:
    """``result.error.statusCode``, else ``result.statusCode``; a non-integer becomes 400."""
    if not isinstance(result, dict):
        return None
    error = result.get("error")
    value = error.get("statusCode") if isinstance(error, dict) and "statusCode" in error else result.get("statusCode")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        return 400
    return int(value)


def activation_body(record: ActivationRecord) -> dict[str, Any] | None:
    """The ``Activation`` body (``Activation.from``); None without ``path``/``kind``."""
    path, kind = record.annotation("path"), record.annotation("kind")
    if path is None or kind is None:
        return None
    limits = record.annotation("limits") or {}
    body: dict[str, Any] = {
        "name": path, "activationId": record.activation_id, "statusCode": int(record.response.status_code),
        "duration": max(record.duration_ms, 0), "waitTime": max(record.annotation("waitTime", 0), 0),
        "initTime": max(record.annotation("initTime", 0), 0), "kind": kind,
        "conductor": bool(record.annotation("conductor", False)), "memory": limits.get("memory", 0)}
    if record.annotation("causedBy") is not None:
        body["causedBy"] = record.annotation("causedBy")
    if record.response.size is not None:
        body["size"] = record.response.size
    status = user_defined_status_code(record.response.result)
    if status is not None:
        body["userDefinedStatusCode"] = status
    return body


def event_message(source: str, body: dict[str, Any], identity: Identity, namespace: str,
                  event_type: str, timestamp_ms: int | None = None) -> dict[str, Any]:
    return {"source": source, "body": body, "subject": identity.subject, "namespace": namespace,
            "userId": identity.uuid, "eventType": event_type,
            "timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)}


class EventPublisher:
    """Sends user events to ``topic``; ``start()`` connects, ``stop()`` flushes."""

    def __init__(self, bootstrap_servers: list[str], topic: str, instance: int):
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.invoker_source = f"invoker{instance}"
        self.controller_source = f"controller{instance}"
        self.published = 0
        self.failed = 0
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._producer: KafkaProducer | None = None

    def start(self) -> None:
        from kafka import KafkaProducer  # imported here: nothing happens at import time
        self._producer = KafkaProducer(bootstrap_servers=self.bootstrap_servers, linger_ms=0, acks=1,
                                       retries=3, max_block_ms=10000)
        self._thread = threading.Thread(target=self._run, args=(self._producer,), name="user-events", daemon=True)
        self._thread.start()

    def activation(self, record: ActivationRecord, identity: Identity, source: str | None = None) -> None:
        """The ``Activation`` event of ``record``, from invoker ``source`` (default: this instance's)."""
        body = activation_body(record)
        if body is not None:
            self._queue.put(event_message(source or self.invoker_source, body, identity, record.namespace,
                                          "Activation"))

    def metric(self, name: str, value: int, identity: Identity) -> None:
        body = {"metricName": name, "metricValue": value}
        self._queue.put(event_message(self.controller_source, body, identity, identity.namespace, "Metric"))

    def _run(self, producer: KafkaProducer) -> None:
        while True:
            message = self._queue.get()
            if message is None:
                return
            try:
                future = producer.send(self.topic, json.dumps(message, separators=(",", ":")).encode())
                future.add_callback(self._sent).add_errback(self._failed, message)
            except Exception as exc:  # noqa: BLE001 (the broker is down: lose the event, say so)
                self._failed(exc, message)

    def _sent(self, _metadata) -> None:
        self.published += 1

    def _failed(self, exc, message) -> None:
        self.failed += 1
        LOG.warning("user event not published (%s): %s", exc, message.get("body"))

    def stop(self) -> None:
        if self._thread is not None and self._producer is not None:
            self._queue.put(None)
            self._thread.join(5)
            self._producer.flush(5)
            self._producer.close(5)
            self._thread = None


class NoEvents:
    """User events disabled."""

    def start(self) -> None:
        pass

    def activation(self, record: ActivationRecord, identity: Identity, source: str | None = None) -> None:
        pass

    def metric(self, name: str, value: int, identity: Identity) -> None:
        pass

    def stop(self) -> None:
        pass
