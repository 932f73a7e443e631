"""The user-event consumer (loader/completion/user_events.py on loader/completion/kafka_consumer.py)
against a real Kafka-protocol broker: where it starts reading, and what a broker that is not
there looks like."""

from __future__ import annotations

import json
import threading
import time

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from faasload import tansu
from loader.completion.user_events import ActivationEvent, EventConsumer

pytestmark = pytest.mark.timeout(120)


def _event(activation_id: str) -> bytes:
    return json.dumps({"eventType": "Activation", "body": {"activationId": activation_id, "statusCode": 0},
                       "namespace": "ns", "source": "invoker0", "userId": "u"}).encode()


def _produce(bootstrap: str, topic: str, ids: list[str], *, one_per_batch: bool = False) -> None:
    producer = KafkaProducer(bootstrap_servers=[bootstrap])
    for activation_id in ids:
        producer.send(topic, _event(activation_id))
        if one_per_batch:  # Tansu's end offset counts batches, not records (docs/injector.md)
            producer.flush()
    producer.flush()
    producer.close()


def _collect(consumer_ids: list[str], expected: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(consumer_ids) < expected and time.monotonic() < deadline:
        time.sleep(0.05)


def _consumer(bootstrap: str, topic: str, seen: list[str]) -> EventConsumer:
    lock = threading.Lock()

    def on_events(events: list[ActivationEvent]) -> None:
        with lock:
            seen.extend(event.activation_id for event in events)
    return EventConsumer([bootstrap], topic, on_events, poll_timeout_s=0.05, retry_s=0.2).start()


def test_reads_from_the_end_of_an_existing_topic_in_order_per_partition(kafka_broker):
    topic = f"events-{time.time_ns()}"
    admin = KafkaAdminClient(bootstrap_servers=[kafka_broker.bootstrap])
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    _produce(kafka_broker.bootstrap, topic, [f"old{i}" for i in range(20)], one_per_batch=True)
    seen: list[str] = []
    consumer = _consumer(kafka_broker.bootstrap, topic, seen)
    try:
        assert consumer.wait_ready(30), consumer.stats.last_error
        fresh = [f"new{i}" for i in range(200)]
        _produce(kafka_broker.bootstrap, topic, fresh)
        _collect(seen, len(fresh))
        time.sleep(0.3)  # nothing more may come
    finally:
        consumer.stop()
    assert sorted(seen) == sorted(fresh)  # none of the records older than the start, each new one once
    assert consumer.stats.activation_events == 200 and consumer.stats.errors == 0


def test_a_topic_created_after_the_start_is_read_from_its_beginning(kafka_broker):
    topic = f"late-{time.time_ns()}"
    seen: list[str] = []
    consumer = _consumer(kafka_broker.bootstrap, topic, seen)
    try:
        assert consumer.wait_ready(30)  # ready: it knows the topic is not there yet
        ids = [f"a{i}" for i in range(50)]
        _produce(kafka_broker.bootstrap, topic, ids)  # the broker creates the topic on first use
        _collect(seen, len(ids))
    finally:
        consumer.stop()
    assert sorted(seen) == sorted(ids)


def test_no_broker_is_counted_and_retried_never_raised(tmp_path, caplog):
    broker = tansu.start(tmp_path / "gone")
    bootstrap = broker.bootstrap
    broker.stop()   # a port nobody listens on any more
    seen: list[str] = []
    consumer = _consumer(bootstrap, "events", seen)
    try:
        deadline = time.monotonic() + 30
        while consumer.stats.errors < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        consumer.stop()
    assert consumer.stats.errors >= 2 and not consumer.ready and not seen
    assert consumer.stats.last_error and "BrokerUnavailable" in consumer.stats.last_error
    assert "user events unavailable" in caplog.text and "unexpected error" not in caplog.text
