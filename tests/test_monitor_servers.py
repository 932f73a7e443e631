"""The monitor daemon over its real sockets (subprocess `python -m monitor`): bad input on both
sockets, socket files, and measurements of a calibrated process in a real cgroup."""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.monitor import send_raw

V2 = Path(__file__).parent / "fixtures_data" / "cgroup_v2"
DOCKER = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"
MIB = 1024 * 1024


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
    root = tmp_path / "cg"
    shutil.copytree(V2, root)
    return root


def test_garbage_oversized_and_half_closed_on_both_sockets_then_valid_query(monitor_factory, tree):
    monitor = monitor_factory.start(sockets={"max_message_bytes": 1024, "read_timeout_s": 0.3},
                                    sampling={"cgroup_root": str(tree)}, discovery={"docker": False})
    stalled = []
    for path in (monitor.notification_socket, monitor.measurement_socket):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        sock.sendall(b'{"action": "ru')  # never finished, never closed
        stalled.append(sock)
    bad = [b"\x00\xffgarbage", b"[1,2,3]", b"A" * 5000, b'{"action": "run", "contai',
           b'{"action": "launch", "container": "x"}']
    for payload in bad:
        assert send_raw(monitor.notification_socket, payload) == b""
    answers = [json.loads(send_raw(monitor.measurement_socket, payload)) for payload in bad]
    assert [a["code"] for a in answers] == ["bad_request", "bad_request", "too_large", "bad_request", "bad_request"]
    assert "not valid JSON" in answers[0]["error"]
    assert answers[1]["error"] == "expected a JSON object, got list"
    assert answers[2]["error"] == "message longer than sockets:max_message_bytes"
    assert answers[4]["error"] == "unknown key(s) 'action'"
    # the stalled clients time out on their own; the measurement one gets told why
    stalled[1].settimeout(5)
    timeout_answer = json.loads(stalled[1].recv(65536))
    assert "incomplete after the read timeout" in timeout_answer["error"]
    wait_for(lambda: "notification dropped: message incomplete after the read timeout" in monitor.log_text(),
             what="the stalled notification to time out")
    for sock in stalled:
        sock.close()
    # and a valid exchange works
    monitor.notify({"action": "run", "container": DOCKER})
    samples = wait_for(lambda: monitor.query({"container": DOCKER, "start": 0, "end": time.time() + 10}),
                       what="samples")
    assert samples[0] == {"date": samples[0]["date"], "memory": 31457280, "cpu": 0, "rss_mapped": 25165824 + 1048576}
    assert monitor.query({"container": "nope", "start": 0, "end": 1}) == {
        "error": "unknown container 'nope'", "code": "unknown_container"}
    assert monitor.query({"activation": "f" * 32})["code"] == "unknown_activation"
    log = monitor.log_text()
    assert log.count("notification dropped") == 6
    assert "notification dropped: message longer than sockets:max_message_bytes" in log
    assert "notification dropped: message incomplete after the read timeout" in log, log
    assert "notification dropped: 'action' must be one of run, rm, pause, resume" in log


def test_socket_files_mode_stale_and_cleanup(monitor_factory, tree):
    monitor = monitor_factory.start(sampling={"cgroup_root": str(tree)}, discovery={"docker": False},
                                    sockets={"mode": 0o660})
    for path in (monitor.notification_socket, monitor.measurement_socket):
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    second = subprocess.run([sys.executable, "-m", "monitor", "--set", f"sockets:notification={monitor.notification_socket}",
                             "--set", f"sockets:measurement={monitor.directory / 'other'}",
                             "--set", f"sampling:cgroup_root={tree}", "--set", "discovery:docker=false"],
                            capture_output=True, text=True, timeout=30, cwd=Path(__file__).parent.parent)
    assert second.returncode == 1
    assert f"{monitor.notification_socket}: another process is listening on it" in second.stderr
    monitor.kill()  # leaves stale socket files behind
    assert monitor.notification_socket.exists()
    again = monitor_factory.start(sampling={"cgroup_root": str(tree)}, discovery={"docker": False},
                                  sockets={"notification": str(monitor.notification_socket),
                                           "measurement": str(monitor.measurement_socket)})
    assert again.stop() == 0
    assert not monitor.notification_socket.exists() and not monitor.measurement_socket.exists()


def test_missing_cgroup_hierarchy_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "monitor", "--set", f"sampling:cgroup_root={tmp_path}",
                             "--set", f"sockets:notification={tmp_path}/n", "--set", f"sockets:measurement={tmp_path}/m"],
                            capture_output=True, text=True, timeout=30, cwd=Path(__file__).parent.parent)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"monitor: error: {tmp_path} holds neither a cgroup v1 memory controller "
                                     "nor a cgroup v2 hierarchy")


def interval_percentiles_ms(samples):
    dates = np.array([s["date"] for s in samples])
    gaps_ms = np.diff(dates) * 1000
    return {p: round(float(np.percentile(gaps_ms, p)), 3) for p in (50, 90, 99, 100)}


@pytest.mark.cgroups
def test_calibrated_process_measured_by_the_daemon(monitor_factory, cgroups, calibrated_child_factory):
    """A process in a real cgroup allocates N MiB then burns C ms, each in its own activation."""
    monitor = monitor_factory.start(logging={"root": {"level": "INFO"}})
    created = cgroups.create()
    own = {c: "/" + str(d.relative_to(Path("/sys/fs/cgroup") / (c or "."))) for c, d in created.items()}
    container = "c-" + uuid.uuid4().hex[:8]
    monitor.notify({"action": "run", "container": container, "cgroup": own})
    child = calibrated_child_factory([d / "cgroup.procs" for d in dict.fromkeys(created.values())])
    wait_for(lambda: monitor.query({"container": container, "start": 0, "end": time.time() + 1}), what="samples")
    size_mib, burn_ms = 64, 300
    activations = {"alloc": uuid.uuid4().hex, "burn": uuid.uuid4().hex}
    for command, arg in (("alloc", size_mib), ("burn", burn_ms)):
        activation = activations[command]
        monitor.notify({"action": "activation_start", "container": container, "activation": activation,
                        "date": time.time()})
        time.sleep(0.03)  # a few samples of the baseline inside the activation
        assert child.ask(f"{command} {arg}").startswith(command[:4])
        time.sleep(0.03)
        monitor.notify({"action": "activation_end", "container": container, "activation": activation,
                        "date": time.time()})
    alloc = monitor.query({"activation": activations["alloc"]})
    memory = [s["memory"] for s in alloc["samples"]]
    grown = max(memory) - memory[0]
    assert abs(grown - size_mib * MIB) <= 0.05 * size_mib * MIB, (grown, memory[:3])
    burn = monitor.query({"activation": activations["burn"]})
    assert burn["container"] == container and burn["start"] < burn["end"]
    assert burn["samples"][0]["date"] <= burn["start"] and burn["samples"][-1]["date"] >= burn["end"]
    cpu_ns = burn["samples"][-1]["cpu"]
    assert abs(cpu_ns - burn_ms * 1e6) <= 0.05 * burn_ms * 1e6, cpu_ns
    everything = monitor.query({"container": container, "start": 0, "end": time.time()})
    percentiles = interval_percentiles_ms(everything)
    print(f"\nmonitor accuracy: memory +{grown / MIB:.2f} MiB for {size_mib} MiB; cpu {cpu_ns / 1e6:.1f} ms "
          f"for {burn_ms} ms; sample interval percentiles (ms) {percentiles} over {len(everything)} samples")
    assert percentiles[50] == pytest.approx(10.0, abs=1.0)
    monitor.notify({"action": "rm", "container": container})
    assert monitor.stop() == 0
