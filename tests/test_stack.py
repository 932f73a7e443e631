"""scripts/stack.sh: up starts a real broker, the monitor and localwhisk, each answering; status
shows them and the loader flags; down stops every one by pid."""

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
STACK = str(ROOT / "scripts" / "stack.sh")
ENV = {**os.environ, "FAASLOAD_PYTHON": sys.executable}


def _stack(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([STACK, *args], env=ENV, capture_output=True, text=True, timeout=120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.slow
def test_up_status_down(tmp_path):
    state = tmp_path / "stack"
    up = _stack("up", "--state", str(state))
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        env = dict(line.split("=", 1) for line in (state / "stack.env").read_text().splitlines())
        env = {key: shlex.split(value)[0] if value else "" for key, value in env.items()}
        assert requests.get(f"{env['APIHOST']}/api/v1", timeout=5).status_code == 200
        host, port = env["BROKER"].split(":")
        socket.create_connection((host, int(port)), timeout=5).close()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(env["MEASUREMENT_SOCKET"])
        pids = {name: int((state / "pids" / f"{name}.pid").read_text()) for name in ("tansu", "monitor", "localwhisk")}
        assert all(map(_alive, pids.values()))

        again = _stack("up", "--state", str(state))
        assert again.returncode == 1 and "is already running" in again.stderr

        status = _stack("status", "--state", str(state))
        assert status.returncode == 0
        assert f"localwhisk: running (pid {pids['localwhisk']}" in status.stdout
        assert f"--set openwhisk:apihost={env['APIHOST']}" in status.stdout
        assert f"--set monitor:measurement_socket={env['MEASUREMENT_SOCKET']}" in status.stdout
    finally:
        down = _stack("down", "--state", str(state))
    assert down.returncode == 0, down.stderr
    assert not any(map(_alive, pids.values()))
    assert "stopped localwhisk" in down.stdout and "stopped tansu" in down.stdout
    assert "nothing running" in _stack("status", "--state", str(state)).stdout


def test_a_part_that_fails_to_start_stops_the_others(tmp_path):
    # An interpreter that runs everything but localwhisk, which exits at once with an error.
    python = tmp_path / "python"
    python.write_text(f"""#!/bin/sh
case "$*" in *"-m localwhisk"*) echo "localwhisk: error: broken on purpose" >&2; exit 1 ;; esac
exec {sys.executable} "$@"
""")
    python.chmod(0o755)
    state = tmp_path / "stack"
    result = subprocess.run([STACK, "up", "--state", str(state)], env={**ENV, "FAASLOAD_PYTHON": str(python)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"localwhisk did not start (log: {state}/logs/localwhisk.log)" in result.stderr
    assert "stopped monitor" in result.stderr and "stopped tansu" in result.stderr
    assert "broken on purpose" in (state / "logs" / "localwhisk.log").read_text()
    assert not list((state / "pids").glob("*.pid"))


@pytest.mark.slow
def test_up_with_a_monitor_already_listening(tmp_path):
    """--monitor-socket: no monitor started; localwhisk notifies the given socket (the monitor unit's)."""
    state = tmp_path / "stack"
    notif = tmp_path / "wdm" / "notif"
    up = _stack("up", "--state", str(state), "--monitor-socket", str(notif))
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert f"monitor: not started here; localwhisk notifies {notif}" in up.stdout
        env = dict(line.split("=", 1) for line in (state / "stack.env").read_text().splitlines())
        assert shlex.split(env["NOTIFICATION_SOCKET"]) == [str(notif)] and env["MEASUREMENT_SOCKET"] == "''"
        assert not (state / "pids" / "monitor.pid").exists()
        assert f"monitor:notification_socket={notif}" in (state / "logs" / "localwhisk.cmd").read_text()
        status = _stack("status", "--state", str(state))
        assert "monitor:" not in status.stdout.split("loader flags:")[1].splitlines()[0], status.stdout
    finally:
        down = _stack("down", "--state", str(state))
    assert down.returncode == 0, down.stderr
