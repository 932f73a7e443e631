"""loader/monitor_client.py against a real monitor, and against broken or absent ones."""

import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from loader.monitor_client import MonitorAnswer, MonitorClient, ResourcesStatus
from loader.storage.rows import NO_SAMPLES, ResourceSample

V2 = Path(__file__).parent / "fixtures_data" / "cgroup_v2"
DOCKER = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"


class OneShotServer:
    """A UNIX socket that accepts, reads the request, then answers ``reply`` (or nothing)."""

    def __init__(self, path, reply):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.reply = reply
        self.held = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.held.append(conn)
        conn.recv(65536)
        if self.reply is not None:
            conn.sendall(self.reply)
            conn.close()

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_monitor_absent_or_refusing(tmp_path):
    answer = MonitorClient(tmp_path / "nothing", timeout_s=1).samples_for_activation("a" * 32)
    assert answer == MonitorAnswer(NO_SAMPLES, ResourcesStatus.MONITOR_DOWN, f"{tmp_path}/nothing: No such file or directory")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "stale"))  # bound, never listening: connections are refused
    answer = MonitorClient(tmp_path / "stale", timeout_s=1).samples_for_activation("a" * 32)
    assert answer.status is ResourcesStatus.MONITOR_DOWN and "Connection refused" in answer.reason
    stale.close()


def test_hanging_monitor_costs_at_most_the_timeout(tmp_path):
    server = OneShotServer(tmp_path / "hang", None)
    try:
        started = time.monotonic()
        answer = MonitorClient(tmp_path / "hang", timeout_s=0.3).samples_for_activation("a" * 32)
        elapsed_s = time.monotonic() - started
    finally:
        server.close()
    assert answer.status is ResourcesStatus.MONITOR_DOWN
    assert answer.reason.endswith("no answer within 0.3 s")
    assert elapsed_s < 0.3 + 1.0  # bounded by the timeout (with a generous margin for a busy machine)


@pytest.mark.parametrize("reply, reason", [
    (b"not json at all", "bad answer: answer is not valid JSON"),
    (b'{"error": "x", "code": "what"}', "bad answer: unknown error code \"what\""),
    (b'"a string"', "bad answer: answer must be a list of samples, got \"a string\""),
    (b"", "connection closed without an answer"),
])
def test_nonsense_answers(tmp_path, reply, reason):
    server = OneShotServer(tmp_path / "odd", reply)
    try:
        answer = MonitorClient(tmp_path / "odd", timeout_s=2).samples_for_activation("a" * 32)
    finally:
        server.close()
    assert reason in answer.reason
    assert answer.status is (ResourcesStatus.MONITOR_DOWN if reply == b"" else ResourcesStatus.ERROR)


def test_against_a_real_monitor(monitor_factory, tmp_path):
    tree = tmp_path / "cg"
    shutil.copytree(V2, tree)
    monitor = monitor_factory.start(sampling={"cgroup_root": str(tree), "stat_every": 1}, discovery={"docker": False})
    client = MonitorClient(monitor.measurement_socket, timeout_s=5)
    activation, other, lost = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    monitor.notify({"action": "run", "container": DOCKER})
    deadline = time.monotonic() + 10
    while not client.samples_for_window(DOCKER, 0, time.time()).samples:  # sampling has begun
        assert time.monotonic() < deadline
        time.sleep(0.01)
    start = time.time()
    monitor.notify({"action": "activation_start", "container": DOCKER, "activation": activation, "date": start})
    time.sleep(0.05)
    end = time.time()
    monitor.notify({"action": "activation_end", "container": DOCKER, "activation": activation, "date": end})
    answer = client.samples_for_activation(activation)
    assert answer.status is ResourcesStatus.OK and answer.reason == ""
    assert all(isinstance(s, ResourceSample) for s in answer.samples)
    first = answer.samples[0]
    assert (first.memory_bytes, first.cpu_ns, first.rss_mapped_bytes) == (31457280, 0, 25165824 + 1048576)
    assert first.sampled_at_us <= round(start * 1e6) and answer.samples[-1].sampled_at_us >= round(end * 1e6)
    # unknown activation: explicit, or the window of its container when the caller knows it
    assert client.samples_for_activation(lost).status is ResourcesStatus.UNKNOWN
    fallback = client.samples_for_activation(lost, container=DOCKER, start_s=start, end_s=end)
    assert fallback.status is ResourcesStatus.OK and fallback.samples[0].sampled_at_us >= round(start * 1e6)
    # a container without a cgroup (yet): known, no samples
    monitor.notify({"action": "run", "container": "nocgroup"})
    monitor.notify({"action": "activation_start", "container": "nocgroup", "activation": other, "date": time.time()})
    monitor.notify({"action": "activation_end", "container": "nocgroup", "activation": other, "date": time.time()})
    assert client.samples_for_activation(other).status is ResourcesStatus.EMPTY
    monitor.notify({"action": "activation_end", "container": DOCKER, "activation": other, "date": time.time()})
    ambiguous = client.samples_for_activation(other)
    assert ambiguous.status is ResourcesStatus.AMBIGUOUS and "several containers" in ambiguous.reason
    monitor.kill()
    assert client.samples_for_activation(activation).status is ResourcesStatus.MONITOR_DOWN
