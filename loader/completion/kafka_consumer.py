"""The user-event consumer's Kafka client: librdkafka (confluent-kafka), partitions assigned by hand.

:class:`LibrdkafkaConsumer` is what :class:`loader.completion.user_events.EventConsumer` reads
through (:class:`ConsumerLike`).  librdkafka fetches and decodes records in its own C threads, off
the GIL of the loader's process: at 5,000 events/s it costs the process 3-4% of a core where
kafka-python, decoding in Python, cost 28% (60 µs per event; docs/performance.md, "Completions").

No consumer group is joined (the library wants a ``group.id``, which only names the client) and
nothing is committed: the loader positions itself on the end offsets it reads at the start, or on
the beginning of a topic created after it.  Broker trouble (connection refused, all brokers down,
a partition that went away) comes back as :class:`BrokerUnavailable`, an ``OSError``, which the
event consumer counts and retries; librdkafka reconnects by itself meanwhile, and after a broker
that lost its log comes back, reading resumes at the earliest offset (``auto.offset.reset``).
librdkafka's own log lines go to the ``loader.completion.kafka`` logger, critical ones only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

log = logging.getLogger("loader.completion.kafka")

#: Records taken from librdkafka's queue per call, at most.
BATCH_MAX = 1000
#: librdkafka's log level (syslog numbering): 2 = critical only.  Its errors (a failed connection,
#: logged at every reconnect attempt: ~10 lines a second while a broker is down) come through its
#: error callback instead, and the event consumer warns once per distinct error.
LIBRDKAFKA_LOG_LEVEL = 2
#: librdkafka's prefetch queue, at most: at 5,000 events/s of ~300 bytes, 4 s of events.
PREFETCH_MESSAGES = 20_000
PREFETCH_KBYTES = 16_384
#: How long a metadata or offsets request may wait for the broker.
REQUEST_TIMEOUT_S = 5.0


class BrokerUnavailable(ConnectionError):
    """The broker could not be used (retried by the caller)."""


class ConsumerLike(Protocol):
    """What :class:`~loader.completion.user_events.EventConsumer` uses of a Kafka consumer."""

    def partitions(self, topic: str) -> list[int] | None:
        """The topic's partitions; None if the topic does not exist."""
        ...

    def assign(self, topic: str, partitions: Iterable[int], *, from_beginning: bool) -> None:
        """Read those partitions from their beginning, or from their end offsets as of now."""
        ...

    def poll(self, timeout_s: float) -> list[bytes | None]:
        """The values of the records that came within ``timeout_s`` (maybe none)."""
        ...

    def close(self) -> None: ...


class LibrdkafkaConsumer:
    """A :class:`ConsumerLike` on confluent-kafka's ``Consumer``."""

    def __init__(self, bootstrap_servers: list[str], *, client_id: str, fetch_wait_ms: int):
        self._errors: list[str] = []
        self._consumer = Consumer({
            "bootstrap.servers": ",".join(bootstrap_servers),
            "client.id": client_id,
            "group.id": client_id,            # required by the library; no group is joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # a broker that lost its log: read what it has now
            "enable.partition.eof": False,
            "fetch.wait.max.ms": fetch_wait_ms,
            "fetch.queue.backoff.ms": 0,      # fetch again at once: the records are small and few
            # the prefetch queue, bounded (librdkafka's defaults: 100,000 messages, 64 MB per partition)
            "queued.min.messages": PREFETCH_MESSAGES,
            "queued.max.messages.kbytes": PREFETCH_KBYTES,
            "socket.nagle.disable": True,
            "log_level": LIBRDKAFKA_LOG_LEVEL,
            "logger": log,
            "error_cb": self._on_error,
        })

    def _on_error(self, error: Any) -> None:  # librdkafka's global errors, served inside poll()
        self._errors.append(f"{error.name()}: {error.str()}")

    def partitions(self, topic: str) -> list[int] | None:
        try:
            metadata = self._consumer.list_topics(topic, timeout=REQUEST_TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerUnavailable(f"no metadata of topic {topic!r}: {exc.args[0].str()}") from None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return sorted(found.partitions)

    def assign(self, topic: str, partitions: Iterable[int], *, from_beginning: bool) -> None:
        assignment = []
        for partition in partitions:
            if from_beginning:
                offset = OFFSET_BEGINNING
            else:   # the end as of now, not as of the first fetch (which OFFSET_END would be)
                try:
                    _, offset = self._consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                                    timeout=REQUEST_TIMEOUT_S)
                except KafkaException as exc:
                    raise BrokerUnavailable(f"no end offset of {topic}[{partition}]: {exc.args[0].str()}") from None
            assignment.append(TopicPartition(topic, partition, offset))
        try:
            self._consumer.assign(assignment)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot assign {topic}: {exc.args[0].str()}") from None

    def poll(self, timeout_s: float) -> list[bytes | None]:
        if self._errors:
            first_error, self._errors = self._errors[0], []
            raise BrokerUnavailable(first_error)
        try:  # consume() waits for a whole batch or its timeout: take what is there, else wait for one
            messages = self._consumer.consume(num_messages=BATCH_MAX, timeout=0)
            if not messages:
                first = self._consumer.poll(timeout_s)
                if first is None:
                    return []
                messages = [first, *self._consumer.consume(num_messages=BATCH_MAX - 1, timeout=0)]
        except KafkaException as exc:   # a fatal error of the client; the caller retries
            raise BrokerUnavailable(f"{exc.args[0].name()}: {exc.args[0].str()}") from None
        values: list[bytes | None] = []
        for message in messages:
            error = message.error()
            if error is None:
                values.append(message.value())
            else:  # a partition's error; the records around it are kept
                self._errors.append(f"{error.name()}: {error.str()}")
        return values

    def close(self) -> None:
        self._consumer.close()
