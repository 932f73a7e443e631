"""Small process helpers for the service launchers: free ports, readiness, stopping by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable


class ServiceError(RuntimeError):
    """A service could not be started, or did not become ready."""


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def tcp_accepts(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(ready: Callable[[], bool], *, timeout_s: float, what: str,
               process: subprocess.Popen | None = None, log_path: str | None = None,
               poll_s: float = 0.02) -> None:
    """Poll ``ready()`` until true; raise :class:`ServiceError` on timeout or early exit."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process is not None and process.poll() is not None:
            raise ServiceError(f"{what} exited with status {process.returncode}{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} not ready after {timeout_s:.0f} s{_tail(log_path)}")
        time.sleep(poll_s)


def stop_process(process: subprocess.Popen, *, timeout_s: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout_s)


def stop_pid(pid: int, *, timeout_s: float = 10.0) -> None:
    """Stop a process that is not our child, by pid."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(log_path: str | None, lines: int = 15) -> str:
    if not log_path or not os.path.exists(log_path):
        return ""
    with open(log_path, encoding="utf-8", errors="replace") as stream:
        text = stream.readlines()[-lines:]
    return "\n" + "".join(text)
