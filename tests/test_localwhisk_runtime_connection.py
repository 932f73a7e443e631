"""The kept connection from localwhisk's invoker to a container's runtime proxy (real proxy process, real HTTP)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localwhisk.backends import LogBuffer
from localwhisk.pool import ContainerPool
from localwhisk.runtime_client import CallOutcome, RuntimeConnection

ROOT = Path(__file__).resolve().parent.parent
PROXY = ROOT / "localwhisk" / "runtime" / "proxy.py"
CODE = ("import time\n"
        "def main(args):\n"
        "    time.sleep(float(args.get('sleep_s', 0)))\n"
        "    return {'echo': args.get('n')}\n")


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@pytest.fixture(params=["tcp", "unix"])
def proxy(request, tmp_path):
    """A way to reach a running proxy: TCP (process backend) or a UNIX socket (Docker backend)."""
    port_file, socket_path = tmp_path / "port", tmp_path / "proxy.sock"
    where = ["--port-file", str(port_file)] if request.param == "tcp" else ["--socket", str(socket_path)]
    process = subprocess.Popen([sys.executable, str(PROXY), *where], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (port_file.exists() if request.param == "tcp" else _accepts(socket_path)):
            assert process.poll() is None and time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.01)
        if request.param == "tcp":
            port = int(port_file.read_text())
            yield lambda: RuntimeConnection(port)
        else:
            yield lambda: RuntimeConnection(0, socket_path=str(socket_path))
    finally:
        process.kill()
        process.wait()


def _init(connection: RuntimeConnection) -> None:
    answer = connection.post("/init", {"value": {"code": CODE, "main": "main"}}, 20)
    assert (answer.outcome, answer.status) == (CallOutcome.ANSWERED, 200), answer


def test_successive_calls_share_one_connection(proxy):
    connection = proxy()
    _init(connection)
    answers = [connection.post("/run", {"value": {"n": n}}, 10) for n in range(3)]
    assert [(a.status, a.body) for a in answers] == [(200, f'{{"echo": {n}}}\n') for n in range(3)]
    assert connection.connections_opened == 1
    connection.close()
    before_ms = int(time.time() * 1000)
    answer = connection.post("/run", {"value": {"n": 9, "sleep_s": 0.05}}, 10)
    after_ms = int(time.time() * 1000)
    assert answer.body == '{"echo": 9}\n' and connection.connections_opened == 2
    assert before_ms + 50 <= answer.end_ms <= after_ms  # the end of the call, for the record's end


def test_a_timed_out_call_drops_the_connection(proxy):
    connection = proxy()
    _init(connection)
    assert connection.post("/run", {"value": {"sleep_s": 1.0}}, 0.2).outcome is CallOutcome.TIMED_OUT
    time.sleep(1.0)  # the action finishes; its late answer must not be read as the next call's
    answer = connection.post("/run", {"value": {"n": 5}}, 10)
    assert (answer.status, answer.body) == (200, '{"echo": 5}\n')
    assert connection.connections_opened == 2


def test_a_kept_connection_does_not_block_another(proxy):
    kept = proxy()
    _init(kept)
    assert kept.post("/run", {"value": {"n": 1}}, 10).status == 200  # left open
    other = proxy()
    answer = other.post("/run", {"value": {"n": 2}}, 5)
    assert (answer.outcome, answer.body) == (CallOutcome.ANSWERED, '{"echo": 2}\n')
    second_init = other.post("/init", {"value": {"code": CODE}}, 5)
    assert second_init.status == 403  # still one action per container, whichever connection asks
    kept.close()
    other.close()


def test_a_refused_connection_is_a_connection_error(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert RuntimeConnection(port).post("/run", {}, 2).outcome is CallOutcome.CONNECTION_ERROR


class _Container:
    def __init__(self):
        self.id = self.name = "c0"
        self.port, self.socket_path, self.cgroup, self.logs = 0, None, None, LogBuffer()

    def pause(self):
        pass

    def resume(self):
        pass

    def destroy(self):
        pass


class _Backend:
    name, supports_pause = "fake", True

    def create(self, name, memory_mb, env, network=False):
        return _Container()


def test_the_pool_drops_the_connection_at_pause_and_destroy():
    """As OpenWhisk's suspend and destroy: a paused or removed container's connection is closed."""
    now = [0.0]
    pool = ContainerPool(_Backend(), capacity_mb=512, keepalive_s=10, pause_grace_s=1, notify=lambda *_: None,
                         clock=lambda: now[0])
    pooled, _ = pool.acquire(("a",), 128, lambda: "x", {}, 1.0)
    runtime = pooled.runtime()
    assert pooled.runtime() is runtime  # kept between activations
    pool.release(pooled, healthy=True)
    now[0] += 2
    pool.tick()  # paused
    resumed, cold = pool.acquire(("a",), 128, lambda: "x", {}, now[0] + 1)
    assert resumed is pooled and not cold and pooled.runtime() is not runtime
    runtime = pooled.runtime()
    closed = []
    runtime.close = lambda: closed.append(True)  # type: ignore[method-assign]
    pool.release(pooled, healthy=False)  # destroyed
    assert closed == [True]
