"""Notifications to the FaaSLoad monitor's socket (docs/monitor.md, Notification socket), never blocking for long.

One JSON object per connection on a UNIX stream socket; connect and send within
``connect_timeout_s`` (≤ 50 ms), else drop the message (counted, logged at DEBUG).

Every notice then waits, within the same timeout, for the monitor to close the connection, which
it does once it has handled the notice: so the monitor has found a new container's cgroup before
its first activation starts, an activation's start notice has reset the container's kernel peak
counter (docs/monitor.md, Kernel peaks) before the action runs, and the end of one activation is
handled before the start of the next.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

LOG = logging.getLogger(__name__)


class MonitorNotifier:
    def __init__(self, socket_path: str, timeout_s: float = 0.05):
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.sent = 0
        self.dropped = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.socket_path)

    def send(self, message: dict) -> bool:
        """Deliver one message and wait (within the timeout) for the monitor to close the
        connection, having handled it; False (and counted) when it was dropped."""
        if not self.socket_path:
            return False
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        deadline_s = time.monotonic() + self.timeout_s
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(self.socket_path)
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                _wait_closed(sock, deadline_s)
        except OSError as exc:
            with self._lock:
                self.dropped += 1
            LOG.debug("monitor notification dropped (%s): %s", exc, message)
            return False
        with self._lock:
            self.sent += 1
        return True

    def container(self, action: str, container_id: str, cgroup: str | None) -> bool:
        message = {"action": action, "container": container_id}
        if cgroup:
            message["cgroup"] = cgroup
        return self.send(message)

    def activation(self, action: str, container_id: str, activation_id: str, date_s: float) -> bool:
        return self.send({"action": action, "container": container_id, "activation": activation_id, "date": date_s})


def _wait_closed(sock: socket.socket, deadline_s: float) -> None:
    """Until the peer closes (the monitor answers nothing on this socket); a timeout is not a
    failure: the notice was delivered, the monitor is only slow (it then knows it came late)."""
    try:
        while True:
            sock.settimeout(max(0.0005, deadline_s - time.monotonic()))
            if not sock.recv(64):
                return
    except TimeoutError:
        LOG.debug("monitor slow to handle a notification (connect_timeout_s passed)")
