"""The monitor's measurement socket over TCP: the token first, nothing answered without it; the loader's TCP
client and the router that picks the monitor of an activation's invoker."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest

from faasload.monitor_protocol import (
    ActivationAnswer,
    ActivationQuery,
    BatchAnswer,
    BatchQuery,
    ErrorCode,
    Sample,
    Samples,
    encode_batch_answer,
    encode_error,
    parse_query,
)
from faasload.monitor_tcp import encode_auth
from faasload.token_file import TokenFileError, create_token_file, read_token
from loader.monitor_client import MonitorAnswer, MonitorClient, ResourcesQuery, ResourcesStatus
from loader.monitor_endpoints import EndpointError, MonitorRouter, TcpMonitorClient, open_monitors, parse_endpoint
from monitor import config as monitor_config
from monitor.servers import ReadOutcome
from monitor.tcp_server import TcpMeasurementServer

TOKEN = "s3cret-token-of-the-monitors-0123456789"
ACTIVATION = "0123456789abcdef0123456789abcdef"


def _answer_of(raw: bytes, outcome: ReadOutcome) -> bytes:
    """A handler that answers what it received (an activation answer with one sample)."""
    query = json.loads(raw)
    return json.dumps({"activation": query["activation"], "container": "wsk1_1_u_a", "start": 1.0, "end": 2.0,
                       "samples": [{"date": 1.5, "memory": 4096, "cpu": 10, "rss_mapped": None}]}).encode()


@pytest.fixture
def server():
    tcp = TcpMeasurementServer("127.0.0.1", 0, TOKEN, _answer_of, max_message_bytes=65536, read_timeout_s=1.0)
    tcp.start()
    yield tcp
    tcp.stop()


def _raw(address, payload: bytes) -> bytes:
    with socket.create_connection(address, timeout=3) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_client_gets_the_samples_with_the_token(server):
    host, port = server.address
    answer = TcpMonitorClient(host, port, TOKEN, timeout_s=2).samples_for_activation(ACTIVATION)
    assert answer.status is ResourcesStatus.OK
    assert [(s.sampled_at_us, s.memory_bytes, s.cpu_ns) for s in answer.samples] == [(1_500_000, 4096, 10)]
    assert "s3cret" not in repr(TcpMonitorClient(host, port, TOKEN)) + repr(server)


@pytest.mark.parametrize("payload", [
    b'{"activation": "' + ACTIVATION.encode() + b'"}\n',                            # no token line
    encode_auth("wrong-token-wrong-token-wrong") + b'{"activation": "' + ACTIVATION.encode() + b'"}\n',
    encode_auth(TOKEN[:-1]) + b'{"activation": "' + ACTIVATION.encode() + b'"}\n',  # almost
    b'{"token": "' + TOKEN.encode() + b'", "x": 1}\n{"activation": "' + ACTIVATION.encode() + b'"}\n',
    b"x" * 5000,                                                                   # no newline at all
    b"",
])
def test_nothing_is_answered_without_the_token(server, payload):
    assert _raw(server.address, payload) == b""
    if payload:
        assert server.refused >= 1


def test_a_wrong_token_is_told_apart_from_a_silent_monitor(server):
    host, port = server.address
    answer = TcpMonitorClient(host, port, "not-the-token-not-the-token", timeout_s=2).samples_for_activation(ACTIVATION)
    assert answer.status is ResourcesStatus.MONITOR_DOWN
    assert "does monitor:token_file hold the monitor's token?" in answer.reason


def test_token_then_query_in_one_segment_or_split(server):
    # the token line and the query may come in any segmentation
    with socket.create_connection(server.address, timeout=3) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = encode_auth(TOKEN) + b'{"activation": "' + ACTIVATION.encode() + b'"}\n'
        for i in range(0, len(data), 7):
            sock.sendall(data[i:i + 7])
            time.sleep(0.001)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert json.loads(answer)["activation"] == ACTIVATION


def test_the_monitor_daemon_serves_tcp_behind_its_token_file(monitor_factory, tmp_path):
    token_file = create_token_file(tmp_path / "token")
    monitor = monitor_factory.start(sockets={"measurement_tcp": "127.0.0.1:0", "token_file": str(token_file)})
    match = None
    deadline = time.monotonic() + 10
    while match is None and time.monotonic() < deadline:
        match = re.search(r"measurement socket also on TCP 127\.0\.0\.1:(\d+)", monitor.log_text())
        time.sleep(0.02)
    assert match, monitor.log_text()
    port = int(match.group(1))
    client = TcpMonitorClient("127.0.0.1", port, read_token(token_file), timeout_s=2)
    answer = client.samples_for_activation(ACTIVATION)
    assert answer.status is ResourcesStatus.UNKNOWN        # answered: the monitor does not know it
    assert _raw(("127.0.0.1", port), b'{"activation": "' + ACTIVATION.encode() + b'"}\n') == b""
    assert read_token(token_file) not in monitor.log_text()


def test_the_monitor_refuses_a_token_file_others_can_read(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o644)
    with pytest.raises(TokenFileError, match=r"mode 0644 lets other users read the token \(chmod 600"):
        read_token(path)
    path.chmod(0o600)
    assert read_token(path) == TOKEN
    path.write_text("short\n")
    with pytest.raises(TokenFileError, match="at least 16 printable"):
        read_token(path)
    with pytest.raises(TokenFileError, match="no such token file"):
        read_token(tmp_path / "absent")
    created = create_token_file(tmp_path / "new")
    assert created.stat().st_mode & 0o777 == 0o600 and len(read_token(created)) >= 40


def test_monitor_config_tcp_needs_a_token_file(tmp_path):
    config = tmp_path / "monitor.yml"
    config.write_text("sockets:\n  measurement_tcp: 10.0.0.2:9300\n")
    with pytest.raises(monitor_config.ConfigError, match="sockets:token_file: required with sockets:measurement_tcp"):
        monitor_config.load(config)
    config.write_text("sockets:\n  measurement_tcp: 10.0.0.2\n  token_file: /x\n")
    with pytest.raises(monitor_config.ConfigError, match=r"sockets:measurement_tcp: expected HOST:PORT"):
        monitor_config.load(config)


# --------------------------------------------------------------------------- endpoints and the router

def test_endpoints():
    assert parse_endpoint("unix:///run/faasload/meas").path == "/run/faasload/meas"
    tcp = parse_endpoint("tcp://10.0.0.2:9300")
    assert (tcp.host, tcp.port, tcp.tcp) == ("10.0.0.2", 9300, True)
    assert parse_endpoint("tcp://[::1]:9300").host == "::1"
    for bad in ("unix://run/meas", "tcp://10.0.0.2", "http://x:1", "/run/meas", "tcp://h:99999"):
        with pytest.raises(EndpointError):
            parse_endpoint(bad)


class Known:
    """A monitor client that knows the activations in ``known``."""

    def __init__(self, name: str, known: set[str], status=ResourcesStatus.OK):
        self.name, self.known, self.status = name, known, status
        self.asked: list[str] = []
        self.batches: list[list[str]] = []

    def samples_for_activation(self, activation_id: str, **hints) -> MonitorAnswer:
        self.asked.append(activation_id)
        if activation_id in self.known:
            return MonitorAnswer((), self.status, self.name)
        return MonitorAnswer((), ResourcesStatus.UNKNOWN, f"{self.name} does not know it")

    def samples_for_activations(self, queries) -> list[MonitorAnswer]:
        self.batches.append([q.query.activation for q in queries])
        return [self.samples_for_activation(q.query.activation) for q in queries]


def test_the_router_asks_one_batch_per_monitor():
    a, b = Known("a", {"x1", "x2", "z"}), Known("b", {"y", "w"})
    router = MonitorRouter({"invoker0": a, "invoker1": b})
    queries = [ResourcesQuery(ActivationQuery(activation), source) for activation, source in
               [("x1", "invoker0"), ("y", "invoker1"), ("w", None), ("x2", "invoker0"), ("z", "invoker9"),
                ("lost", None)]]
    answers = router.samples_for_activations(queries)
    assert [a.reason for a in answers[:5]] == ["a", "b", "b", "a", "a"]
    # the invoker is named where no source did: the monitor that knew it ran it
    assert [a.invoker for a in answers] == [None, None, "invoker1", None, "invoker0", None]
    assert answers[5].status is ResourcesStatus.UNKNOWN
    assert "invoker0: unknown (a does not know it); invoker1: unknown (b does not know it)" in answers[5].reason
    # the sources' batches, then the unknown ones to every monitor in turn, each asked only what is left
    assert a.batches == [["x1", "x2"], ["w", "z", "lost"]]
    assert b.batches == [["y"], ["w", "lost"]]
    assert router.asked == {"invoker0": 5, "invoker1": 3}


def test_the_router_asks_the_monitor_of_the_source_only():
    a, b = Known("a", {"x"}), Known("b", {"y"})
    router = MonitorRouter({"invoker0": a, "invoker1": b})
    assert router.samples_for_activation("y", source="invoker1", start_s=1.0).reason == "b"
    assert a.asked == [] and b.asked == ["y"]


def test_without_a_source_every_monitor_is_asked_until_one_knows():
    a, b = Known("a", {"x"}), Known("b", {"y"})
    router = MonitorRouter({"invoker1": b, "invoker0": a})
    found = router.samples_for_activation("y")
    assert (found.reason, found.invoker) == ("b", "invoker1")
    assert a.asked == ["y"] and b.asked == ["y"]                 # in the order of the invoker names
    missing = router.samples_for_activation("z", source="invoker7")   # a source without an endpoint
    assert missing.status is ResourcesStatus.UNKNOWN
    assert "invoker0: unknown (a does not know it); invoker1: unknown (b does not know it)" in missing.reason


def test_router_over_real_unix_and_tcp_monitors(server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    host, port = server.address
    router = open_monitors({"invoker0": f"unix://{tmp_path}/absent.sock", "invoker1": f"tcp://{host}:{port}"},
                           token_file, 2.0)
    assert isinstance(router.clients["invoker0"], MonitorClient)
    assert router.samples_for_activation(ACTIVATION, source="invoker1").status is ResourcesStatus.OK
    assert router.samples_for_activation(ACTIVATION, source="invoker0").status is ResourcesStatus.MONITOR_DOWN
    assert router.samples_for_activation(ACTIVATION).status is ResourcesStatus.OK   # invoker0 down, invoker1 knows


def test_errors_travel_as_errors(tmp_path):
    tcp = TcpMeasurementServer("127.0.0.1", 0, TOKEN, lambda raw, outcome: encode_error(ErrorCode.AMBIGUOUS, "two"),
                               max_message_bytes=65536, read_timeout_s=1.0)
    tcp.start()
    try:
        answer = TcpMonitorClient(*tcp.address, TOKEN).samples_for_activation(ACTIVATION)
        assert (answer.status, answer.reason) == (ResourcesStatus.AMBIGUOUS, "two")
    finally:
        tcp.stop()


def test_loader_config_endpoints(tmp_path):
    from loader import config as loader_config
    path = Path(tmp_path / "loader.yml")
    path.write_text("monitor:\n  endpoints:\n    invoker0: unix:///run/meas\n    invoker1: tcp://10.0.0.2:9300\n")
    with pytest.raises(loader_config.ConfigError, match="monitor:token_file: tcp:// endpoints need"):
        loader_config.load(path)
    path.write_text("monitor:\n  endpoints:\n    invoker1: tcp://10.0.0.2\n")
    with pytest.raises(loader_config.ConfigError, match=r"monitor:endpoints:invoker1: expected HOST:PORT"):
        loader_config.load(path)


def _batch_answer_of(raw: bytes, outcome: ReadOutcome) -> bytes:
    """A handler that answers each query of a batch with one sample whose memory is its position."""
    batch = parse_query(raw)
    assert isinstance(batch, BatchQuery)
    return encode_batch_answer(BatchAnswer(tuple(
        ActivationAnswer(q.activation, "wsk1_1_u_a", 1.0, 2.0, Samples.of((Sample(1.5, n, 0, None),)))
        for n, q in enumerate(batch.queries)), batch.version))


def test_batches_travel_over_tcp():
    tcp = TcpMeasurementServer("127.0.0.1", 0, TOKEN, _batch_answer_of, max_message_bytes=65536, read_timeout_s=1.0)
    tcp.start()
    try:
        ids = [f"{n:032x}" for n in range(5)]
        answers = TcpMonitorClient(*tcp.address, TOKEN, timeout_s=2).samples_for_activations(
            [ResourcesQuery(ActivationQuery(a)) for a in ids])
    finally:
        tcp.stop()
    assert [a.status for a in answers] == [ResourcesStatus.OK] * 5
    assert [a.samples[0].memory_bytes for a in answers] == list(range(5))
