"""From user events and activation records to the dataset's fields (pure functions)."""

import json

import pytest

from loader.completion.user_events import EventConsumer, EventError, parse_event
from loader.storage.activation_fields import completion_fields, slim_record
from loader.storage.rows import RunStatus

RECORD = {"activationId": "0a1b2c3d4e5f40718293a4b5c6d7e8f9", "namespace": "guest", "name": "hello",
          "start": 1700000000000, "end": 1700000000455, "duration": 455,
          "response": {"status": "success", "success": True, "size": 97,
                       "result": {"outputsize": 12345, "times": {"extract": 1.5, "transform": 20, "load": 2.25}}},
          "annotations": [{"key": "path", "value": "guest/hello"}, {"key": "waitTime", "value": 1234},
                          {"key": "kind", "value": "python:3.11"}, {"key": "timeout", "value": False},
                          {"key": "limits", "value": {"concurrency": 1, "logs": 10, "memory": 256, "timeout": 60000}},
                          {"key": "initTime", "value": 412}]}

EVENT = {"source": "invoker0", "body": {"name": "guest/hello", "activationId": "0a1b2c3d4e5f40718293a4b5c6d7e8f9",
                                        "statusCode": 0, "duration": 455, "waitTime": 1234, "initTime": 412,
                                        "kind": "python:3.11", "conductor": False, "memory": 256, "size": 29},
         "subject": "guest", "namespace": "guest", "userId": "23bc46b1-71f6-4ed5-8c54-816aa4f8c502",
         "eventType": "Activation", "timestamp": 1700000000470}


def test_cold_start_record_gives_every_field():
    fields = completion_fields(RECORD)
    assert fields == {"status": RunStatus.SUCCESS, "status_reason": None, "start_ms": 1700000000000,
                      "end_ms": 1700000000455, "duration_ms": 455, "wait_time_ms": 1234, "init_time_ms": 412,
                      "cold_start": True, "kind": "python:3.11", "memory_limit_mb": 256,
                      "response_size_bytes": 97, "output_size_bytes": 12345, "extract_ms": 1.5,
                      "transform_ms": 20.0, "load_ms": 2.25, "result_error": None}


def test_warm_error_record():
    record = json.loads(json.dumps(RECORD))
    record["annotations"] = [a for a in record["annotations"] if a["key"] != "initTime"]
    record["response"] = {"status": "action developer error", "success": False,
                          "result": {"error": "The action exceeded its time limits of 100 milliseconds."}}
    fields = completion_fields(record)
    assert fields["status"] is RunStatus.DEVELOPER_ERROR and fields["cold_start"] is False
    assert fields["init_time_ms"] is None and fields["output_size_bytes"] is None and fields["extract_ms"] is None
    assert fields["result_error"] == "The action exceeded its time limits of 100 milliseconds."
    assert fields["status_reason"] == fields["result_error"]
    record["response"] = {"status": "application error", "success": False, "result": {"error": {"code": 3}}}
    assert completion_fields(record)["result_error"] == '{"code": 3}'
    assert completion_fields(record)["status"] is RunStatus.APPLICATION_ERROR


def _variant(**changes) -> dict:
    record = json.loads(json.dumps(RECORD))
    record["logs"] = ["2026-12-01T00:00:00Z stdout: " + "x" * 200] * 50
    record["response"]["result"]["payload"] = "y" * 10_000
    for key, value in changes.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


@pytest.mark.parametrize("record", [
    _variant(),
    _variant(response={"status": "action developer error", "success": False, "size": 40,
                       "result": {"error": {"code": 3, "detail": "z" * 500}}}),
    _variant(response={"statusCode": 2, "result": "a string result"}),
    _variant(response={"success": True, "result": ["a", "list"]}),
    _variant(response=None, statusCode=1),
    _variant(response={"status": "whisk internal error"}, annotations=None, start=None),
    _variant(annotations=[{"key": "initTime", "value": 3}, "not an annotation", {"value": "no key"}]),
], ids=["cold success", "error object", "string result", "list result", "no response", "bare", "odd annotations"])
def test_a_slim_record_gives_the_same_fields_and_query_hints(record):
    """The record-fetch process sends slim_record(record) to the pipeline: nothing the loader
    reads may change, and the logs and the result's bulk stay behind."""
    slim = slim_record(record)
    assert completion_fields(slim) == completion_fields(record)
    assert (slim.get("namespace"), slim.get("name")) == (record.get("namespace"), record.get("name"))
    assert "logs" not in slim and "payload" not in json.dumps(slim)
    assert len(json.dumps(slim)) < 2_000  # of ~21,000: the error text, stored whole, is the largest part kept


def test_activation_event_parsed_and_other_types_ignored():
    event = parse_event(json.dumps(EVENT).encode())
    assert (event.activation_id, event.status_code, event.namespace) == (RECORD["activationId"], 0, "guest")
    metric = {**EVENT, "eventType": "Metric", "body": {"metricName": "TimedRateLimit", "metricValue": 1}}
    assert parse_event(json.dumps(metric)) is None


@pytest.mark.parametrize("value,message", [
    (b"{not json", "not JSON"), (b"[1, 2]", "not a JSON object but list"), (b"{}", "no eventType"),
    (json.dumps({"eventType": "Activation"}).encode(), "Activation event without a body object"),
    (json.dumps({"eventType": "Activation", "body": {"name": "x"}}).encode(),
     "Activation event without body.activationId"),
    (b"\xff\xfe", "not JSON"),
])
def test_malformed_events_raise_with_reason(value, message):
    with pytest.raises(EventError, match=message):
        parse_event(value)


class OnePoll:
    """A consumer whose topic has one partition and whose one poll brings ``values``."""

    def __init__(self, values):
        self.values = values

    def partitions(self, topic):
        return [0]

    def assign(self, topic, partitions, *, from_beginning):
        pass

    def poll(self, timeout_s):
        values, self.values = self.values, []
        return values

    def close(self):
        pass


def test_consumer_counts_malformed_and_other_events_and_never_raises():
    calls = []
    values = [b"garbage", None, json.dumps({**EVENT, "eventType": "Metric"}).encode(), json.dumps(EVENT).encode()]
    consumer = EventConsumer(["127.0.0.1:1"], "events", calls.append,
                             consumer_factory=lambda *args, **kwargs: OnePoll(values))
    assert consumer.tick() and consumer.tick() and consumer.tick()   # assign, the poll, an empty poll
    assert [[e.activation_id for e in events] for events in calls] == [[RECORD["activationId"]]]   # one call
    stats = consumer.stats
    assert (stats.messages, stats.malformed, stats.other_events, stats.activation_events) == (4, 2, 1, 1)
