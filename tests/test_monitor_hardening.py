"""The monitor against hostile or careless clients (issue 16, item 12).

Ids with a trailing newline are refused; a notice's cgroup path cannot lead outside the
cgroup hierarchy (``..``, a symlink out); only regular files are opened (a FIFO cannot stall
anything); discovery I/O runs outside the registry lock; idle connections hold no worker,
and one client cannot hold more than ``sockets:max_pending_per_client`` of them.
The daemon tests run ``python -m monitor`` over its real sockets on a fixture cgroup v2 tree.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from faasload.clock import FakeClock
from faasload.monitor_protocol import (
    ActivationNotice,
    Boundary,
    ContainerNotice,
    Lifecycle,
    ProtocolError,
    parse_notification,
    parse_query,
)
from monitor.cgroups import CgroupError, CgroupV1Reader, CgroupV2Reader
from monitor.discovery import Discovery, DockerContainer
from monitor.registry import Registry
from tests.fixtures.monitor import send_raw

V2 = Path(__file__).parent / "fixtures_data" / "cgroup_v2"
DOCKER = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"
ACT = "0123456789abcdef0123456789abcdef"
OUTSIDE_MEMORY_BYTES = 777_777_777


def wait_for(predicate, timeout_s=10.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def tree(tmp_path):
    """A cgroup v2 fixture tree, and next to it (outside it) a cgroup-looking directory."""
    root = tmp_path / "cg"
    shutil.copytree(V2, root)
    outside = tmp_path / "outside"
    shutil.copytree(root / "docker" / DOCKER, outside)
    (outside / "memory.current").write_text(f"{OUTSIDE_MEMORY_BYTES}\n")
    return root


def _start(monitor_factory, tree, **sockets):
    return monitor_factory.start(sampling={"cgroup_root": str(tree)}, discovery={"docker": False},
                                 docker={"enabled": False}, sockets=sockets)


# --------------------------------------------------------------------------- ids

@pytest.mark.parametrize("message", [
    {"activation": ACT + "\n"},
    {"container": DOCKER + "\n", "start": 0, "end": 1},
])
def test_ids_with_a_trailing_newline_are_refused(message):
    with pytest.raises(ProtocolError, match="is not a valid"):
        parse_query(json.dumps(message).encode())


def test_notice_ids_with_a_trailing_newline_are_refused():
    with pytest.raises(ProtocolError, match="'container' is not a valid container id"):
        parse_notification(json.dumps({"action": "run", "container": "abc\n"}).encode())
    with pytest.raises(ProtocolError, match="'activation' is not a valid activation id"):
        parse_notification(json.dumps({"action": "activation_start", "container": "abc",
                                       "activation": ACT + "\n", "date": 1.0}).encode())


def test_trailing_newline_id_over_the_socket_is_a_bad_request(monitor_factory, tree):
    monitor = _start(monitor_factory, tree)
    answer = monitor.query({"activation": ACT + "\n"})
    assert answer["code"] == "bad_request" and "not a valid activation id" in answer["error"]


# --------------------------------------------------------------------------- paths confined to the hierarchy

def test_dotdot_in_a_notice_cgroup_is_refused():
    with pytest.raises(ProtocolError, match=r"'\.\.'"):
        parse_notification(json.dumps({"action": "run", "container": "c1", "cgroup": "/docker/../../outside"}).encode())
    with pytest.raises(ProtocolError, match=r"'\.\.'"):
        parse_notification(json.dumps({"action": "run", "container": "c1",
                                       "cgroup": {"memory": "/../x", "cpuacct": "/y"}}).encode())


@pytest.mark.parametrize("reader_class", [CgroupV1Reader, CgroupV2Reader])
def test_readers_confine_paths_to_the_hierarchy(tmp_path, reader_class):
    root = tmp_path / "cg"
    mounts = [root / "memory", root / "cpuacct"] if reader_class is CgroupV1Reader else [root]
    for mount in mounts:
        (mount / "docker" / "ok").mkdir(parents=True)
        (mount / "docker" / "escape").symlink_to(tmp_path)
    reader = reader_class(root)
    inside = reader.dirs({"": "/docker/ok"})
    assert inside.memory == (mounts[0] / "docker" / "ok")
    for path in ("/docker/../../elsewhere", "/docker/escape", "/docker/escape/x"):
        with pytest.raises(CgroupError, match="outside the cgroup hierarchy"):
            reader.dirs({"": path})


def test_symlink_out_of_the_hierarchy_is_never_sampled(monitor_factory, tree):
    (tree / "docker" / "escape").symlink_to(tree.parent / "outside")
    monitor = _start(monitor_factory, tree)
    monitor.notify({"action": "run", "container": "evil1", "cgroup": "/docker/escape"})
    monitor.notify({"action": "run", "container": "evil2", "cgroup": "/docker/../../outside"})
    monitor.notify({"action": "run", "container": DOCKER})
    wait_for(lambda: monitor.query({"container": DOCKER, "start": 0, "end": time.time() + 10}), what="samples")
    time.sleep(0.1)
    assert monitor.query({"container": "evil1", "start": 0, "end": time.time() + 10}) == []
    assert monitor.query({"container": "evil2", "start": 0, "end": time.time() + 10})["code"] == "unknown_container"
    log = monitor.log_text()
    assert "outside the cgroup hierarchy" in log and "'..'" in log
    assert str(OUTSIDE_MEMORY_BYTES) not in json.dumps(monitor.query({"container": "evil1", "start": 0,
                                                                      "end": time.time() + 10}))


# --------------------------------------------------------------------------- only regular files

def test_a_fifo_in_a_cgroup_stalls_nothing(monitor_factory, tree):
    trap = tree / "docker" / "trap"
    shutil.copytree(tree / "docker" / DOCKER, trap)
    (trap / "memory.current").unlink()
    os.mkfifo(trap / "memory.current")
    monitor = _start(monitor_factory, tree)
    try:
        monitor.notify({"action": "run", "container": "trap", "cgroup": "/docker/trap"})
        started = time.monotonic()
        monitor.notify({"action": "run", "container": DOCKER})
        monitor.notify({"action": "activation_start", "container": DOCKER, "activation": ACT, "date": time.time()})
        samples = wait_for(lambda: monitor.query({"container": DOCKER, "start": 0, "end": time.time() + 10}),
                           timeout_s=5, what="samples of the other container")
        assert time.monotonic() - started < 2.0
        assert samples[0]["memory"] == 31457280
        assert monitor.query({"activation": ACT})["container"] == DOCKER
        trap_samples = wait_for(lambda: monitor.query({"container": "trap", "start": 0, "end": time.time() + 10}),
                                timeout_s=5, what="samples of the trap container")
        assert all(s["memory"] is None for s in trap_samples)  # never read from the FIFO
        assert "is not a regular file" in monitor.log_text()
    finally:
        try:  # unblock a reader stuck on the FIFO (code before the fix), so that the monitor can stop
            os.close(os.open(trap / "memory.current", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


# --------------------------------------------------------------------------- discovery outside the lock

def test_slow_discovery_does_not_hold_the_registry(tree):
    """Docker's inspect hangs for one container: notices and queries of others go on."""
    release = threading.Event()
    entered = threading.Event()

    def slow_inspect(container: str):
        entered.set()
        release.wait(10)
        return DockerContainer(container, None)

    reader = CgroupV2Reader(tree)
    registry = Registry(reader, Discovery(reader, slow_inspect), FakeClock(), resolution_s=0.01, maxage_s=60,
                        retention_s=60)
    slow = threading.Thread(target=registry.apply, args=(ContainerNotice(Lifecycle.RUN, "slowone"),), daemon=True)
    slow.start()
    assert entered.wait(5)
    fast = threading.Thread(target=lambda: (
        registry.apply(ContainerNotice(Lifecycle.RUN, "fastone", (("", f"/docker/{DOCKER}"),))),
        registry.apply(ActivationNotice(Boundary.START, "fastone", ACT, 1.0)),
        registry.activation_binding(ACT), registry.named_candidates()), daemon=True)
    started = time.monotonic()
    fast.start()
    fast.join(2.0)
    blocked = fast.is_alive()
    release.set()
    slow.join(10)
    fast.join(10)
    assert not blocked, "a notice of another container waited for the slow discovery"
    assert time.monotonic() - started < 2.0
    assert [c.id for c in registry.running] == ["fastone"]
    registry.close()


# --------------------------------------------------------------------------- idle connections

def _idle_connections(path: Path, count: int) -> list[socket.socket]:
    connections = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        connections.append(sock)
    return connections


def test_forty_idle_connections_do_not_delay_a_query(monitor_factory, tree):
    monitor = _start(monitor_factory, tree, read_timeout_s=2.0)
    monitor.notify({"action": "run", "container": DOCKER})
    wait_for(lambda: monitor.query({"container": DOCKER, "start": 0, "end": time.time() + 10}), what="samples")
    idle = _idle_connections(monitor.measurement_socket, 40) + _idle_connections(monitor.notification_socket, 40)
    try:
        time.sleep(0.1)
        started = time.monotonic()
        answer = monitor.query({"container": DOCKER, "start": 0, "end": time.time() + 10})
        delay_s = time.monotonic() - started
        assert answer and answer[0]["memory"] == 31457280
        assert delay_s < 0.5, f"query delayed {delay_s:.2f} s by idle connections"
        monitor.notify({"action": "activation_start", "container": DOCKER, "activation": ACT, "date": time.time()})
        assert wait_for(lambda: monitor.query({"activation": ACT}).get("container"), timeout_s=1) == DOCKER
        # the idle ones are closed after the read timeout (the measurement ones told why)
        idle[0].settimeout(5)
        assert "incomplete after the read timeout" in json.loads(idle[0].recv(65536))["error"]
        idle[-1].settimeout(5)
        assert idle[-1].recv(65536) == b""
    finally:
        for sock in idle:
            sock.close()


def test_one_client_cannot_hold_more_than_its_share(monitor_factory, tree):
    monitor = _start(monitor_factory, tree, read_timeout_s=30.0, max_pending_per_client=8)
    idle = _idle_connections(monitor.measurement_socket, 12)
    try:
        for sock in idle[:4]:  # the oldest beyond the share are closed at once, without an answer
            sock.settimeout(5)
            assert sock.recv(65536) == b""
        for sock in idle[5:]:
            sock.settimeout(0.2)
            with pytest.raises(TimeoutError):
                sock.recv(65536)
        assert send_raw(monitor.measurement_socket, b'{"container": "x", "start": 0, "end": 1}\n', timeout_s=2)
        assert "holds more than 8 connections without a complete message" in monitor.log_text()
    finally:
        for sock in idle:
            sock.close()
