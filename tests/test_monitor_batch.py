"""Batch queries of the measurement socket: the wire format, a real monitor answering them as it
answers single queries, malformed batches refused while the monitor keeps serving, and the
client's fallbacks (an older monitor, a batch too long for the monitor, a monitor down)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from faasload.monitor_protocol import (
    BATCH_VERSION,
    BATCH_VERSIONS,
    MAX_BATCH_QUERIES,
    NO_SAMPLES,
    ActivationAnswer,
    ActivationQuery,
    BatchAnswer,
    BatchQuery,
    ErrorAnswer,
    ErrorCode,
    KernelPeak,
    PeakSource,
    ProtocolError,
    Sample,
    Samples,
    WindowQuery,
    encode_batch_answer,
    encode_query,
    parse_answer,
    parse_query,
)
from loader.monitor_client import MonitorClient, ResourcesQuery, ResourcesStatus
from tests.fixtures.monitor import send_raw

V2 = Path(__file__).parent / "fixtures_data" / "cgroup_v2"
DOCKER = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"
ACT = "0123456789abcdef0123456789abcdef"


# --------------------------------------------------------------------------- wire format

@pytest.mark.parametrize("version", BATCH_VERSIONS)
def test_batch_round_trip(version):
    batch = BatchQuery((ActivationQuery(ACT, "guest", "resize", 1000, 2000, "python:3.11"),
                        WindowQuery("c-1", 1.0, 2.0), ActivationQuery(ACT)), version)
    raw = encode_query(batch)
    assert json.loads(raw)["version"] == version
    assert parse_query(raw) == batch
    samples = Samples.of((Sample(1.0, 2, 0, None), Sample(1.5, None, 7, 3)))
    answer = BatchAnswer((samples, ActivationAnswer(ACT, "c", 1.0, None, NO_SAMPLES),
                          ActivationAnswer(ACT, "c", 1.0, 2.0, samples, KernelPeak(4096, PeakSource.ACTIVATION)),
                          ErrorAnswer(ErrorCode.UNKNOWN_ACTIVATION, "unknown")), version)
    assert parse_answer(encode_batch_answer(answer)) == answer
    # encoded an answer at a time (the GIL is released between them), the same bytes as one json.dumps
    whole = {"version": version, "answers": [
        json.loads(encode_batch_answer(BatchAnswer((a,), version)))["answers"][0] for a in answer.answers]}
    assert encode_batch_answer(answer) == json.dumps(whole).encode()
    assert encode_batch_answer(BatchAnswer((), version)) == json.dumps({"version": version, "answers": []}).encode()
    # version 2: one list per field; version 1: one object per sample
    encoded = json.loads(encode_batch_answer(answer))["answers"][2]["samples"]
    if version == 2:
        assert encoded == {"date": [1.0, 1.5], "memory": [2, None], "cpu": [0, 7], "rss_mapped": [None, 3]}
    else:
        assert encoded == [{"date": 1.0, "memory": 2, "cpu": 0, "rss_mapped": None},
                           {"date": 1.5, "memory": None, "cpu": 7, "rss_mapped": 3}]


def test_samples_as_columns_read_as_samples():
    samples = Samples.of((Sample(1.0, 2, 0, None), Sample(1.5, None, 7, 3)))
    assert list(samples) == [Sample(1.0, 2, 0, None), Sample(1.5, None, 7, 3)]
    assert samples[-1] == Sample(1.5, None, 7, 3) and len(samples) == 2
    assert Samples.of(()) is NO_SAMPLES and not NO_SAMPLES


@pytest.mark.parametrize("message, error", [
    ({"batch": [{"activation": ACT}]}, "batch 'version' must be one of 1, 2 (the batch versions this side speaks), "
                                       "got null"),
    ({"version": 3, "batch": [{"activation": ACT}]}, "batch 'version' must be one of 1, 2 (the batch versions this "
                                                     "side speaks), got 3"),
    ({"version": True, "batch": [{"activation": ACT}]}, "batch 'version' must be one of 1, 2"),
    ({"version": 1, "batch": []}, "'batch' must be a non-empty list of queries, got []"),
    ({"version": 1, "batch": {"activation": ACT}}, "'batch' must be a non-empty list of queries"),
    ({"version": 1, "batch": [{"activation": ACT}], "extra": 1}, "unknown key(s) 'extra'"),
    ({"version": 1, "batch": [{"activation": ACT}, 7]}, "batch[1]: expected a query object, got 7"),
    ({"version": 1, "batch": [{"activation": "nope"}]}, "batch[0]: 'activation' is not a valid activation id"),
    ({"version": 1, "batch": [{"activation": ACT}, {"foo": 1}]}, "batch[1]: a query needs 'activation'"),
    ({"version": 1, "batch": [{"container": "c", "start": 2, "end": 1}]}, "batch[0]: 'end' (1.0) is before"),
    ({"version": 1, "batch": [{"version": 1, "batch": [{"activation": ACT}]}]}, "batch[0]: a batch cannot hold a batch"),
    ({"version": 1, "batch": [{"activation": ACT}] * (MAX_BATCH_QUERIES + 1)},
     f"'batch' holds {MAX_BATCH_QUERIES + 1} queries, more than {MAX_BATCH_QUERIES}"),
])
def test_malformed_batches_are_refused_naming_what(message, error):
    with pytest.raises(ProtocolError) as refused:
        parse_query(json.dumps(message).encode())
    assert error in str(refused.value)
    assert refused.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("raw, error", [
    (b'{"version": 9, "answers": []}', "batch answer 'version' must be one of 1, 2"),
    (b'{"version": 1, "answers": {}}', "batch answer 'answers' must be a list"),
    (b'{"version": 1, "answers": [5]}', "answer must be a list of samples, got 5"),
    (b'{"version": 2, "answers": [[]]}', "answer must be an object of sample columns (batch version 2), got []"),
    (b'{"version": 2, "answers": [{"date": [1.0], "memory": [1], "cpu": [0]}]}',
     "answer column 'rss_mapped' must be a list, got null"),
    (b'{"version": 2, "answers": [{"date": [1.0], "memory": [1, 2], "cpu": [0], "rss_mapped": [null]}]}',
     "answer columns differ in length: date 1, memory 2, cpu 1, rss_mapped 1"),
    (b'{"version": 2, "answers": [{"date": ["x"], "memory": [1], "cpu": [0], "rss_mapped": [null]}]}',
     "answer column 'date' must hold numbers (epoch seconds), got \"x\""),
    (b'{"version": 2, "answers": [{"date": [1.0], "memory": [1.5], "cpu": [0], "rss_mapped": [null]}]}',
     "answer column 'memory' must hold integers or nulls, got 1.5"),
    (b'{"version": 2, "answers": [{"date": [1.0], "memory": [true], "cpu": [0], "rss_mapped": [null]}]}',
     "answer column 'memory' must hold integers or nulls, got true"),
    (b'{"version": 2, "answers": [{"date": [NaN], "memory": [1], "cpu": [0], "rss_mapped": [null]}]}',
     "answer holds NaN, which is not a JSON number"),
    (b'{"version": 2, "answers": [{"date": [1.0], "memory": [1], "cpu": [0], "rss_mapped": [null], "x": []}]}',
     "unknown key(s) 'x'"),
    (b'{"version": 2, "answers": [{"activation": "a", "container": "c", "start": 1, "end": 2, "samples": []}]}',
     "activation answer 'samples' must be an object of sample columns (batch version 2), got []"),
])
def test_malformed_batch_answers(raw, error):
    with pytest.raises(ProtocolError) as refused:
        parse_answer(raw)
    assert error in str(refused.value)


# --------------------------------------------------------------------------- a real monitor

@pytest.fixture
def sampled_monitor(monitor_factory, tmp_path):
    """A monitor sampling one container (a v2 fixture tree), with three activations bound to it."""
    tree = tmp_path / "cg"
    shutil.copytree(V2, tree)
    monitor = monitor_factory.start(sampling={"cgroup_root": str(tree), "stat_every": 1}, discovery={"docker": False})
    client = MonitorClient(monitor.measurement_socket, timeout_s=5)
    monitor.notify({"action": "run", "container": DOCKER})
    deadline = time.monotonic() + 10
    while not client.samples_for_window(DOCKER, 0, time.time()).samples:  # sampling has begun
        assert time.monotonic() < deadline
        time.sleep(0.01)
    activations = [uuid.uuid4().hex for _ in range(3)]
    for activation in activations:
        monitor.notify({"action": "activation_start", "container": DOCKER, "activation": activation,
                        "date": time.time()})
        time.sleep(0.03)
        monitor.notify({"action": "activation_end", "container": DOCKER, "activation": activation,
                        "date": time.time()})
    return monitor, client, activations


def test_batch_answers_equal_single_answers(sampled_monitor):
    monitor, client, activations = sampled_monitor
    unknown = uuid.uuid4().hex
    queries = [ResourcesQuery(ActivationQuery(a)) for a in activations + [unknown]]
    batched = client.samples_for_activations(queries)
    singles = [client.samples_for_activation(a) for a in activations + [unknown]]
    assert batched == singles
    assert [a.status for a in batched] == [ResourcesStatus.OK] * 3 + [ResourcesStatus.UNKNOWN]
    assert all(len(a.samples) >= 3 for a in batched[:3])
    assert "handler failed" not in monitor.log_text()


def test_an_activation_whose_end_notice_is_late_ends_at_the_records_end(sampled_monitor):
    # the loader may ask before the end notice arrives: the record's end_ms bounds the answer
    monitor, client, _ = sampled_monitor
    activation = uuid.uuid4().hex
    monitor.notify({"action": "activation_start", "container": DOCKER, "activation": activation,
                    "date": time.time()})
    time.sleep(0.05)
    end_ms = int(time.time() * 1000)
    time.sleep(0.5)  # the end notice is late
    for answer in (client.samples_for_activation(activation, end_s=end_ms / 1000),
                   *client.samples_for_activations([ResourcesQuery(ActivationQuery(activation, end_ms=end_ms))])):
        assert answer.status is ResourcesStatus.OK
        dates_s = [s.sampled_at_us / 1e6 for s in answer.samples]
        assert dates_s[-2] < (end_ms + 1) / 1000 <= dates_s[-1] < (end_ms + 1) / 1000 + 0.3, dates_s
    unbounded = client.samples_for_activation(activation)
    assert unbounded.samples[-1].sampled_at_us / 1e6 > (end_ms + 1) / 1000 + 0.2  # no hint: up to now


def test_malformed_batch_refused_and_the_monitor_keeps_serving(sampled_monitor):
    monitor, client, activations = sampled_monitor
    for message in ({"version": 1, "batch": [{"activation": activations[0]}, {"activation": "x"}]},
                    {"version": 3, "batch": [{"activation": activations[0]}]}):
        answer = json.loads(send_raw(monitor.measurement_socket, json.dumps(message).encode() + b"\n"))
        assert answer["code"] == "bad_request"
        assert ("batch[1]: 'activation' is not a valid activation id" in answer["error"]
                or "batch 'version' must be one of 1, 2" in answer["error"])
    raw = json.loads(send_raw(monitor.measurement_socket, encode_query(
        BatchQuery((ActivationQuery(activations[0]), ActivationQuery(activations[1]))))))
    assert raw["version"] == BATCH_VERSION and [a["activation"] for a in raw["answers"]] == activations[:2]
    assert set(raw["answers"][0]["samples"]) == {"date", "memory", "cpu", "rss_mapped"}   # columns
    old = json.loads(send_raw(monitor.measurement_socket, encode_query(
        BatchQuery((ActivationQuery(activations[0]),), version=1))))
    assert old["version"] == 1 and old["answers"][0]["samples"][0].keys() == {"date", "memory", "cpu", "rss_mapped"}
    assert (parse_answer(json.dumps(old).encode()).answers[0].samples   # type: ignore[union-attr]
            == parse_answer(json.dumps(raw).encode()).answers[0].samples)  # type: ignore[union-attr]
    assert client.samples_for_activation(activations[2]).status is ResourcesStatus.OK
    assert "bad measurement request: batch[1]" in monitor.log_text()


def test_batch_longer_than_the_monitor_accepts_is_split(monitor_factory, sampled_monitor):
    monitor, client, activations = sampled_monitor
    small = monitor_factory.start(sockets={"max_message_bytes": 256}, discovery={"docker": False})
    queries = [ResourcesQuery(ActivationQuery(uuid.uuid4().hex)) for _ in range(9)]  # ~50 bytes each
    answers = MonitorClient(small.measurement_socket, timeout_s=5).samples_for_activations(queries)
    assert [a.status for a in answers] == [ResourcesStatus.UNKNOWN] * 9
    assert all(q.query.activation in a.reason for q, a in zip(queries, answers))


# --------------------------------------------------------------------------- client fallbacks

class OldMonitor:
    """A monitor from before batches (answers a batch as the old parser did), or with
    ``batches_v1`` one that speaks batch version 1 only; single queries get an empty answer."""

    def __init__(self, path: Path, batches_v1: bool = False):
        self.batches_v1 = batches_v1
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.requests: list[dict] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                request = json.loads(data)
                self.requests.append(request)
                if "batch" in request and self.batches_v1 and request["version"] == 1:
                    conn.sendall(json.dumps({"version": 1, "answers": [
                        {"activation": q["activation"], "container": "c", "start": 1.0, "end": 2.0,
                         "samples": [{"date": 1.5, "memory": 7, "cpu": 0, "rss_mapped": None}]}
                        for q in request["batch"]]}).encode() + b"\n")
                elif "batch" in request and self.batches_v1:
                    conn.sendall(json.dumps({"error": f"batch 'version' must be 1 (the batch version this side "
                                                      f"speaks), got {request['version']}",
                                             "code": "bad_request"}).encode() + b"\n")
                elif "batch" in request:
                    conn.sendall(b'{"error": "a query needs \'activation\', or \'container\' with \'start\' and '
                                 b'\'end\'", "code": "bad_request"}\n')
                else:
                    conn.sendall(json.dumps({"activation": request["activation"], "container": "c", "start": 1.0,
                                             "end": 2.0, "samples": []}).encode() + b"\n")

    def close(self):
        self.sock.close()


def test_an_older_monitor_is_asked_one_by_one(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="loader.monitor_client")
    old = OldMonitor(tmp_path / "old")
    try:
        ids = [uuid.uuid4().hex for _ in range(3)]
        answers = MonitorClient(tmp_path / "old", timeout_s=2).samples_for_activations(
            [ResourcesQuery(ActivationQuery(a, start_ms=1000, end_ms=2000)) for a in ids])
    finally:
        old.close()
    assert [a.status for a in answers] == [ResourcesStatus.EMPTY] * 3
    # a batch in version 2, again in version 1, then one by one
    assert [r.get("version") for r in old.requests[:2]] == [2, 1]
    assert [r.get("activation") for r in old.requests] == [None, None] + ids
    assert old.requests[2] == {"activation": ids[0], "start_ms": 1000, "end_ms": 2000}
    assert "refused a batch query" in caplog.text


def test_a_monitor_of_batch_version_1_is_asked_in_version_1_from_then_on(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="loader.monitor_client")
    old = OldMonitor(tmp_path / "v1", batches_v1=True)
    try:
        client = MonitorClient(tmp_path / "v1", timeout_s=2)
        first = client.samples_for_activations([ResourcesQuery(ActivationQuery(uuid.uuid4().hex)) for _ in range(2)])
        second = client.samples_for_activations([ResourcesQuery(ActivationQuery(uuid.uuid4().hex))])
    finally:
        old.close()
    assert [a.status for a in first + second] == [ResourcesStatus.OK] * 3
    assert [(s.sampled_at_us, s.memory_bytes) for s in second[0].samples] == [(1_500_000, 7)]
    assert [r["version"] for r in old.requests] == [2, 1, 1]
    assert "refused a batch of version 2" in caplog.text


def test_monitor_down_answers_every_query_of_the_batch(tmp_path):
    answers = MonitorClient(tmp_path / "nothing", timeout_s=1).samples_for_activations(
        [ResourcesQuery(ActivationQuery(uuid.uuid4().hex)) for _ in range(4)])
    assert [a.status for a in answers] == [ResourcesStatus.MONITOR_DOWN] * 4
    assert all("No such file or directory" in a.reason for a in answers)


def test_a_batch_answer_of_the_wrong_length_is_an_error_for_each(tmp_path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "short"))
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b'{"version": 2, "answers": [{"date": [], "memory": [], "cpu": [], "rss_mapped": []}]}\n')
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        answers = MonitorClient(tmp_path / "short", timeout_s=2).samples_for_activations(
            [ResourcesQuery(ActivationQuery(uuid.uuid4().hex)) for _ in range(2)])
    finally:
        server.close()
    assert [a.status for a in answers] == [ResourcesStatus.ERROR] * 2
    assert answers[0].reason == "bad answer: 1 answers to a batch of 2 queries"
