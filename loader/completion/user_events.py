"""OpenWhisk user events from Kafka: which activations have completed.

:class:`EventConsumer` reads the user-events topic (default ``events``) with a manual
assignment of all its partitions, positioned at their end offsets when the run starts
(no consumer group, so nothing depends on group coordination or on a broker's
quirks).  The ``Activation`` events of each poll are handed to ``on_events`` in one call (one
lock and one wake-up of the tracker per poll), except, when ``accept_user_ids`` is given, those
whose ``userId`` is not among them (another shard's users: counted as ``foreign``,
docs/scale-out.md); other event types are counted and ignored; a malformed message is logged
and counted, never fatal.  When the broker goes away, the consumer keeps retrying while the
completion tracker polls the activation records instead.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .kafka_consumer import ConsumerLike, LibrdkafkaConsumer

log = logging.getLogger(__name__)

#: Malformed messages logged at WARNING before switching to DEBUG.
MALFORMED_WARNINGS = 10


class EventError(ValueError):
    """A Kafka message that is not a well-formed user event."""


@dataclass(frozen=True, slots=True)
class ActivationEvent:
    """The part of an ``Activation`` user event the loader uses."""

    activation_id: str
    status_code: int | None
    namespace: str | None
    source: str | None = None       # the invoker that ran it (``invoker0``): whose monitor sampled it
    user_id: str | None = None      # the namespace's UUID (first half of the user's ``uuid:key``)


def parse_event(value: bytes | str) -> ActivationEvent | None:
    """An ``Activation`` event, None for other event types; :class:`EventError` if malformed."""
    try:
        message = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise EventError(f"not a JSON object but {type(message).__name__}")
    event_type = message.get("eventType")
    if not isinstance(event_type, str):
        raise EventError("no eventType")
    if event_type != "Activation":
        return None
    body = message.get("body")
    if not isinstance(body, dict):
        raise EventError("Activation event without a body object")
    activation_id = body.get("activationId")
    if not isinstance(activation_id, str) or not activation_id:
        raise EventError("Activation event without body.activationId")
    status_code = body.get("statusCode")
    namespace, source, user_id = (message.get(key) for key in ("namespace", "source", "userId"))
    return ActivationEvent(activation_id, status_code if isinstance(status_code, int) else None,
                           namespace if isinstance(namespace, str) else None,
                           source if isinstance(source, str) else None,
                           user_id if isinstance(user_id, str) else None)


@dataclass
class ConsumerStats:
    messages: int = 0
    activation_events: int = 0
    other_events: int = 0
    foreign: int = 0        # Activation events of users this loader does not invoke for (other shards, other tenants)
    malformed: int = 0
    errors: int = 0
    last_error: str | None = None


class EventConsumer:
    """A thread that turns Kafka records into ``on_events`` calls (one per poll that brought some);
    ``tick()`` is one poll."""

    def __init__(self, bootstrap_servers: list[str], topic: str,
                 on_events: Callable[[list[ActivationEvent]], None], *,
                 poll_timeout_s: float = 0.2, fetch_wait_ms: int = 10, retry_s: float = 1.0,
                 consumer_factory: Callable[..., ConsumerLike] = LibrdkafkaConsumer,
                 accept_user_ids: frozenset[str] | None = None):
        self.bootstrap_servers = list(bootstrap_servers)
        self.accept_user_ids = accept_user_ids
        self.topic = topic
        self.on_events = on_events
        self.poll_timeout_s = poll_timeout_s
        self.fetch_wait_ms = fetch_wait_ms
        self.retry_s = retry_s
        self.stats = ConsumerStats()
        self._factory = consumer_factory
        self._consumer: ConsumerLike | None = None
        self._assigned = threading.Event()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._topic_existed_at_start: bool | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EventConsumer:
        self._thread = threading.Thread(target=self._run, name="user-events", daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether, within ``timeout_s``, the consumer is positioned on every partition, or knows
        that the topic does not exist yet (it will then read it from its beginning)."""
        return self._ready.wait(timeout_s)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception:  # closing a consumer of a dead broker may fail; nothing to keep  # noqa: BLE001
                pass
            self._consumer = None

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.tick():
                self._stop.wait(self.retry_s)

    # ------------------------------------------------------------------ one round

    def tick(self) -> bool:
        """Connect, assign or poll once; False when the broker could not be used (retry later)."""
        try:
            consumer = self._consumer
            if consumer is None:
                consumer = self._factory(self.bootstrap_servers, client_id="faasload-loader",
                                         fetch_wait_ms=self.fetch_wait_ms)
                self._consumer = consumer
            if not self._assigned.is_set():
                return self._assign(consumer)
            values = consumer.poll(self.poll_timeout_s)
        except Exception as exc:  # the loader must go on whatever the client raises  # noqa: BLE001
            if not _from_the_broker(exc):
                log.error("unexpected error reading user events (retrying)", exc_info=True)
            self._note_error(exc)
            return False
        events = [event for event in map(self.handle, values) if event is not None]
        if events:
            self.on_events(events)
        return True

    def _assign(self, consumer: ConsumerLike) -> bool:
        partitions = consumer.partitions(self.topic)
        if not partitions:
            if self._topic_existed_at_start is None:
                self._topic_existed_at_start = False
                log.info("user-events topic %r does not exist yet on %s: it will be read from its beginning "
                         "once created", self.topic, ",".join(self.bootstrap_servers))
                self._ready.set()
            return False
        # a topic created after the start: every record is new
        consumer.assign(self.topic, partitions, from_beginning=self._topic_existed_at_start is False)
        self._assigned.set()
        self._ready.set()
        log.info("reading user events from topic %r (%d partitions) on %s", self.topic, len(partitions),
                 ",".join(self.bootstrap_servers))
        return True

    def _note_error(self, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        self.stats.errors += 1
        if text != self.stats.last_error:
            log.warning("user events unavailable (%s); retrying every %.1f s, completions are polled meanwhile",
                        text, self.retry_s)
        self.stats.last_error = text

    def handle(self, value: bytes | None) -> ActivationEvent | None:
        """One Kafka record's value: the activation event to hand over, counted (None: ignored)."""
        self.stats.messages += 1
        try:
            if value is None:
                raise EventError("empty message")
            event = parse_event(value)
        except EventError as exc:
            self.stats.malformed += 1
            level = logging.WARNING if self.stats.malformed <= MALFORMED_WARNINGS else logging.DEBUG
            log.log(level, "ignoring a malformed user event (%d so far): %s", self.stats.malformed, exc)
            return None
        if event is None:
            self.stats.other_events += 1
            return None
        self.stats.activation_events += 1
        if self.accept_user_ids is not None and event.user_id is not None and event.user_id not in self.accept_user_ids:
            self.stats.foreign += 1  # another shard's (or tenant's) activation: not ours to follow
            return None
        return event


def _from_the_broker(exc: Exception) -> bool:
    """An error of the broker or of the network (expected, retried) rather than a bug."""
    return isinstance(exc, OSError)   # TimeoutError is one; the client's own errors come as BrokerUnavailable
