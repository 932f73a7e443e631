"""The invoker wrappers (scripts/invoker-wrappers): exact pass-through, notifications, monitor down."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.docker_images import tiny_image
from tests.notification_sink import NotificationSink

ROOT = Path(__file__).resolve().parent.parent
WRAPPERS = ROOT / "scripts" / "invoker-wrappers"

FAKE_DOCKER = r"""#!/bin/sh
# Imitates docker: prints what it got on stderr, an id on stdout for `run`, exits $FAKE_EXIT.
printf 'args:%s\n' "$*" >&2
for a in "$@"; do
  case $a in run) printf '%s\n' "${FAKE_ID:-4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa99}"; exit "${FAKE_EXIT:-0}";; esac
done
printf 'trailing-no-newline'
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture(scope="module")
def wrapper_dir():
    """The wrappers with the static sender built (make)."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler to build wdm-notify")
    subprocess.run(["make", "-s", "-C", str(WRAPPERS)], check=True)
    return WRAPPERS


@pytest.fixture
def env(tmp_path, wrapper_dir):
    fake_dir = tmp_path / "real-bin"
    fake_dir.mkdir()
    for name in ("docker", "runc", "docker-runc"):
        (fake_dir / name).write_text(FAKE_DOCKER)
        (fake_dir / name).chmod(0o755)
    sock_dir = Path(tempfile.mkdtemp(dir="/tmp"))
    environment = dict(os.environ, PATH=f"{wrapper_dir}:{fake_dir}:{os.environ['PATH']}",
                       FAASLOAD_MONITOR_SOCKET=str(sock_dir / "notif"))
    yield environment, sock_dir / "notif"
    shutil.rmtree(sock_dir, ignore_errors=True)


def _run(args, environment, **extra):
    return subprocess.run(args, env=dict(environment, **extra), capture_output=True, timeout=30)


def test_run_passes_output_through_exactly_and_notifies_the_id(env):
    environment, sock = env
    listener = NotificationSink(sock)
    result = _run(["docker", "--host", "unix:///x", "run", "-d", "--name", "wsk0_1_guest_hello", "img"], environment)
    assert result.returncode == 0
    container_id = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa99"
    assert result.stdout == container_id.encode() + b"\n"
    assert result.stderr == b"args:--host unix:///x run -d --name wsk0_1_guest_hello img\n"
    assert listener.wait_for(1) == [{"action": "run", "container": container_id}]
    listener.close()


@pytest.mark.parametrize("argv, expected", [
    (["docker", "pause", "abc123"], [{"action": "pause", "container": "abc123"}]),
    (["docker", "unpause", "abc123"], [{"action": "resume", "container": "abc123"}]),
    (["docker", "container", "rm", "-f", "abc123", "def456"],
     [{"action": "rm", "container": "abc123"}, {"action": "rm", "container": "def456"}]),
    (["runc", "--root", "/run/docker/runtime-runc/moby", "pause", "abc123"], [{"action": "pause", "container": "abc123"}]),
    (["docker-runc", "resume", "abc123"], [{"action": "resume", "container": "abc123"}]),
])
def test_lifecycle_commands_notify(env, argv, expected):
    environment, sock = env
    listener = NotificationSink(sock)
    result = _run(argv, environment)
    assert result.returncode == 0
    assert result.stdout == b"trailing-no-newline"
    got = listener.wait_for(len(expected))
    assert sorted(got, key=json.dumps) == sorted(expected, key=json.dumps)
    listener.close()


def test_failures_pass_exit_status_and_send_nothing(env):
    environment, sock = env
    listener = NotificationSink(sock)
    for argv in (["docker", "run", "-d", "img"], ["docker", "pause", "abc"], ["runc", "resume", "abc"]):
        result = _run(argv, environment, FAKE_EXIT="3")
        assert result.returncode == 3
    result = _run(["docker", "ps"], environment, FAKE_EXIT="7")
    assert result.returncode == 7 and result.stderr == b"args:ps\n"
    assert listener.wait_for(1, timeout_s=0.5) == []
    listener.close()


def test_monitor_down_never_fails_the_invoker(env):
    environment, sock = env
    result = _run(["docker", "run", "-d", "img"], environment)  # no socket file at all
    assert result.returncode == 0 and result.stdout.startswith(b"4f3c") and result.stdout.endswith(b"\n")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # a socket file nobody listens on (monitor crashed)
    stale.close()
    result = _run(["runc", "pause", "abc"], environment, FAKE_EXIT="0")
    assert result.returncode == 0 and result.stdout == b"trailing-no-newline"


def test_python_fallback_without_the_static_sender(env, tmp_path):
    environment, sock = env
    copy = tmp_path / "wrappers"
    copy.mkdir()
    for name in ("docker", "runc", "notify.sh"):
        shutil.copy2(WRAPPERS / name, copy / name)
    environment = dict(environment, PATH=environment["PATH"].replace(str(WRAPPERS), str(copy)))
    listener = NotificationSink(sock)
    assert _run(["docker", "pause", "abc"], environment).returncode == 0
    assert listener.wait_for(1) == [{"action": "pause", "container": "abc"}]
    listener.close()


def test_missing_real_binary_is_reported(wrapper_dir, tmp_path):
    copy = tmp_path / "wrappers"
    copy.mkdir()
    shutil.copy2(WRAPPERS / "notify.sh", copy / "notify.sh")
    shutil.copy2(WRAPPERS / "runc", copy / "faasload-no-such-runc")
    environment = dict(os.environ, PATH=f"{copy}:/usr/bin:/bin")
    result = subprocess.run([str(copy / "faasload-no-such-runc"), "pause", "x"], env=environment, capture_output=True)
    assert result.returncode == 127
    assert result.stderr == b"faasload faasload-no-such-runc wrapper: no real faasload-no-such-runc binary found on PATH\n"


@pytest.mark.docker
def test_real_docker_lifecycle_is_notified(wrapper_dir, docker_daemon, tmp_path):
    """The wrappers around the real docker CLI: run -d, pause, unpause, rm -f."""
    real_docker = shutil.which("docker")
    if real_docker is None:
        pytest.skip("docker CLI not installed")
    sock_dir = Path(tempfile.mkdtemp(dir="/tmp"))
    listener = NotificationSink(sock_dir / "notif")
    environment = dict(os.environ, DOCKER_HOST=docker_daemon, FAASLOAD_MONITOR_SOCKET=str(sock_dir / "notif"),
                       PATH=f"{wrapper_dir}:{os.environ['PATH']}", FAASLOAD_NOTIFY_DEBUG="1")
    image = _tiny_image(real_docker, environment, tmp_path)
    run = _run(["docker", "run", "-d", "--network", "none", "-v", "/usr:/usr:ro", "--name",
                f"wsk0_{os.getpid()}_guest_sleepy", image, "/usr/bin/sleep", "60"], environment)
    assert run.returncode == 0, run.stderr
    container_id = run.stdout.decode().strip()
    stderr = [run.stderr]  # a failed send says why (FAASLOAD_NOTIFY_DEBUG)
    try:
        for argv in (["docker", "pause", container_id], ["docker", "unpause", container_id]):
            result = _run(argv, environment)
            stderr.append(result.stderr)
            assert result.returncode == 0, result.stderr
    finally:
        result = _run(["docker", "rm", "-f", container_id], environment)
        stderr.append(result.stderr)
        assert result.returncode == 0, result.stderr
    got = listener.wait_for(4)
    assert [m["action"] for m in got] == ["run", "pause", "resume", "rm"], stderr
    assert {m["container"] for m in got} == {container_id}
    listener.close()
    shutil.rmtree(sock_dir, ignore_errors=True)


def _tiny_image(real_docker, environment, tmp_path) -> str:
    """An image with only the merged-usr links, built with `docker import` (no registry here)."""
    return tiny_image(real_docker, environment, tmp_path, "faasload-test/wrapper-tiny:1")
