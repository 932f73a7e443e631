"""End to end: user events on a real Kafka-protocol broker and monitor notifications on a real
UNIX socket, compared with the activation records (issue 3 acceptance; docs/openwhisk-contract.md, User events;
docs/monitor.md, Notification socket).
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

import pytest
import requests
from kafka import KafkaConsumer, TopicPartition

from tests.notification_sink import NotificationSink

HELLO = "def main(args):\n    print('hi')\n    return {'greeting': 'hello'}\n"


def _auth(key: str) -> tuple[str, str]:
    return tuple(key.split(":", 1))


def _consumer(bootstrap: str) -> KafkaConsumer:
    """A consumer assigned to every partition of `events`, positioned at the end (no group join)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=200)
    partitions = None
    deadline = time.monotonic() + 20
    while not partitions:
        consumer.topics()  # refreshes metadata; the broker auto-creates the topic
        partitions = consumer.partitions_for_topic("events")
        if not partitions:
            from kafka import KafkaProducer
            producer = KafkaProducer(bootstrap_servers=bootstrap)
            producer.send("events", b'{"probe": true}').get(10)
            producer.close()
            assert time.monotonic() < deadline, "topic events never appeared"
    assignment = [TopicPartition("events", p) for p in sorted(partitions)]
    consumer.assign(assignment)
    consumer.seek_to_end(*assignment)
    for tp in assignment:
        consumer.position(tp)
    return consumer


def _events_until(consumer: KafkaConsumer, predicate, timeout_s: float = 30) -> list[dict]:
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            for message in batch:
                value = json.loads(message.value)
                if "eventType" in value:
                    assert message.key is None  # OpenWhisk sends no key
                    found.append(value)
        if predicate(found):
            return found
    raise AssertionError(f"expected events not received; got {found}")


def test_activation_event_agrees_with_record(localwhisk, kafka_broker):
    consumer = _consumer(kafka_broker.bootstrap)
    key = localwhisk.create_user(f"events-{time.time_ns()}")
    namespace = requests.get(localwhisk.apihost + "/api/v1/namespaces", auth=_auth(key), timeout=10).json()[0]
    localwhisk.deploy(key, "hello", HELLO, memory_mb=128)
    ids = []
    for _ in range(2):  # cold, then warm
        response = requests.post(localwhisk.url("actions/hello"), auth=_auth(key), timeout=10)
        assert response.status_code == 202
        ids.append(response.json()["activationId"])
        _events_until(consumer, lambda evs, want=ids[-1]: any(e["body"].get("activationId") == want for e in evs))
    consumer.seek_to_beginning()
    events = {e["body"]["activationId"]: e for e in _events_until(
        consumer, lambda evs: all(any(e["body"].get("activationId") == i for e in evs) for i in ids))
        if e["body"].get("activationId") in ids}
    consumer.close()
    for index, activation_id in enumerate(ids):
        event = events[activation_id]
        record = requests.get(localwhisk.url(f"activations/{activation_id}"), auth=_auth(key), timeout=10)
        assert record.status_code == 200  # stored before the event was published
        record = record.json()
        annotations = {a["key"]: a["value"] for a in record["annotations"]}
        assert set(event) == {"source", "body", "subject", "namespace", "userId", "eventType", "timestamp"}
        assert event["source"] == "invoker0" and event["eventType"] == "Activation"
        assert event["subject"] == record["subject"] and event["namespace"] == namespace
        assert event["userId"] == key.split(":")[0]
        body = event["body"]
        assert set(body) == {"name", "activationId", "statusCode", "duration", "waitTime", "initTime", "kind",
                             "conductor", "memory", "size"}  # causedBy / userDefinedStatusCode omitted
        assert body["name"] == f"{namespace}/hello" == annotations["path"]
        assert body["statusCode"] == 0 and body["kind"] == "python:3.11" and body["memory"] == 128
        assert body["conductor"] is False
        assert body["duration"] == record["duration"]
        assert body["waitTime"] == annotations["waitTime"]
        assert body["size"] == record["response"]["size"]
        if index == 0:
            assert body["initTime"] == annotations["initTime"] > 0
        else:
            assert body["initTime"] == 0 and "initTime" not in annotations
        assert event["timestamp"] >= record["end"]


def test_throttle_metric_event(localwhisk_factory, kafka_broker):
    consumer = _consumer(kafka_broker.bootstrap)
    whisk = localwhisk_factory.start(kafka_bootstrap=kafka_broker.bootstrap, actions_per_minute=1)
    key = whisk.create_user("metricuser")
    whisk.deploy(key, "hello", HELLO)
    while time.time() % 60 > 57:
        time.sleep(0.2)
    assert requests.post(whisk.url("actions/hello"), auth=_auth(key), timeout=10).status_code == 202
    assert requests.post(whisk.url("actions/hello"), auth=_auth(key), timeout=10).status_code == 429
    events = _events_until(consumer, lambda evs: any(e["eventType"] == "Metric" and e["namespace"] == "metricuser"
                                                     for e in evs))
    consumer.close()
    metric = next(e for e in events if e["eventType"] == "Metric" and e["namespace"] == "metricuser")
    assert metric["source"] == "controller0"
    assert metric["body"] == {"metricName": "TimedRateLimit", "metricValue": 1}
    assert metric["subject"] == "metricuser" and metric["userId"] == key.split(":")[0]


@pytest.fixture
def notification_sink():
    directory = Path(tempfile.mkdtemp(prefix="lw-notif-", dir="/tmp"))
    sink = NotificationSink(directory / "notif")
    yield sink
    sink.close()


def test_monitor_notifications_process_backend(localwhisk_factory, notification_sink):
    whisk = localwhisk_factory.start(notification_socket=str(notification_sink.path))
    key = whisk.create_user("notified")
    whisk.deploy(key, "hello", HELLO, timeout_ms=300)
    record = requests.post(whisk.url("actions/hello?blocking=true"), auth=_auth(key), timeout=30).json()
    whisk.deploy(key, "sleepy", "import time\ndef main(args):\n    time.sleep(3)\n    return {}\n", timeout_ms=200)
    requests.post(whisk.url("actions/sleepy?blocking=true"), auth=_auth(key), timeout=30)  # destroyed: rm
    deadline = time.monotonic() + 10
    while sum(m["action"] == "rm" for m in notification_sink.messages) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    messages = list(notification_sink.messages)
    runs = [m for m in messages if m["action"] == "run"]
    assert len(runs) == 2
    container = runs[0]["container"]
    assert runs[0]["cgroup"].endswith("/" + container) and runs[0]["cgroup"].startswith("/")
    hello = [m for m in messages if m.get("container") == container]
    assert [m["action"] for m in hello] == ["run", "activation_start", "activation_end"]
    start, end = hello[1], hello[2]
    assert start["activation"] == end["activation"] == record["activationId"]
    assert record["start"] / 1000 - 0.05 <= start["date"] <= record["start"] / 1000 + 0.001
    assert record["end"] / 1000 <= end["date"] + 0.001 <= record["end"] / 1000 + 0.05
    sleepy = [m["action"] for m in messages if m.get("container") == runs[1]["container"]]
    assert sleepy == ["run", "activation_start", "activation_end", "rm"]


def test_dead_monitor_never_blocks(localwhisk_factory):
    directory = Path(tempfile.mkdtemp(prefix="lw-dead-", dir="/tmp"))
    dead = directory / "notif"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(dead))
    listener.listen(1)  # accepts nothing: connections queue, then time out
    try:
        whisk = localwhisk_factory.start(notification_socket=str(dead))
        key = whisk.create_user("deadmon")
        whisk.deploy(key, "hello", HELLO)
        for _ in range(3):
            response = requests.post(whisk.url("actions/hello?blocking=true"), auth=_auth(key), timeout=30)
            assert response.status_code == 200
            assert response.json()["response"]["result"] == {"greeting": "hello"}
    finally:
        listener.close()
