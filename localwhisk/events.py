"""OpenWhisk user events on Kafka (docs/openwhisk-contract.md, User events): ``EventMessage`` JSON, no key.

Messages are queued and handed to librdkafka (confluent-kafka) by one background thread, so an
invocation never waits on the broker.  An event the broker has not taken within
``DELIVERY_TIMEOUT_MS`` (the broker is down) is lost and logged; librdkafka's own log is limited
to critical lines, and each kind of broker error is logged once until an event is delivered again.
kafka-python, which this module used before, cost ~60 µs of CPU per event produced, librdkafka
~18 µs (docs/performance.md, Kafka clients).
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from typing import Any

from .activations import ActivationRecord
from .users import Identity

LOG = logging.getLogger(__name__)

#: How long librdkafka keeps trying to deliver an event before it is lost (and logged).
DELIVERY_TIMEOUT_MS = 10_000
#: How often the sending thread serves librdkafka's delivery reports when no event comes.
IDLE_POLL_S = 0.1


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
        self._producer: Any = None          # a confluent_kafka.Producer once started
        self._errors_logged: set[str] = set()   # broker errors logged since the last event delivered

    def start(self) -> None:
        from confluent_kafka import Producer  # imported here: nothing happens at import time
        self._producer = Producer({
            "bootstrap.servers": ",".join(self.bootstrap_servers), "acks": 1, "linger.ms": 0,
            "message.timeout.ms": DELIVERY_TIMEOUT_MS, "log_level": 2, "error_cb": self._broker_error})
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

    def _run(self, producer: Any) -> None:
        from confluent_kafka import KafkaException
        while True:
            try:
                message = self._queue.get(timeout=IDLE_POLL_S)
            except queue.Empty:
                producer.poll(0)   # delivery reports
                continue
            if message is None:
                return
            try:
                producer.produce(self.topic, json.dumps(message, separators=(",", ":")).encode(),
                                 on_delivery=functools.partial(self._delivered, message))
            except (BufferError, KafkaException) as exc:  # its queue is full (the broker is down long)
                self._failed(exc, message)
            producer.poll(0)

    def _delivered(self, message: dict, error, _delivered) -> None:
        if error is None:
            self.published += 1
            self._errors_logged.clear()
        else:
            self._failed(error, message)

    def _failed(self, exc, message) -> None:
        self.failed += 1
        LOG.warning("user event not published (%s): %s", exc, message.get("body"))

    def _broker_error(self, error) -> None:
        """librdkafka's errors outside a delivery (the broker unreachable...): each kind once until
        an event is delivered again (librdkafka reports them at every reconnection attempt)."""
        kind = error.name() if hasattr(error, "name") else str(error)
        if kind not in self._errors_logged:
            self._errors_logged.add(kind)
            LOG.warning("user events: the broker at %s: %s", ",".join(self.bootstrap_servers), error.str()
                        if hasattr(error, "str") else error)

    def stop(self) -> None:
        if self._thread is not None and self._producer is not None:
            self._queue.put(None)
            self._thread.join(5)
            unsent = self._producer.flush(5)   # serves the last delivery reports
            if unsent:
                self.failed += unsent
                LOG.warning("%d user events not published when localwhisk stopped (the broker did not take "
                            "them within 5 s)", unsent)
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
