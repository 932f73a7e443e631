"""A stand-in for the monitor's notification socket in tests: a UNIX socket server keeping the
JSON object of each connection (one message per connection, as the monitor reads them), in order."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path


class NotificationSink:
    def __init__(self, path: Path, backlog: int = 64):
        self.path = path
        self.messages: list[dict] = []
        self.cond = threading.Condition()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(backlog)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            with self.cond:
                self.messages.append(json.loads(data))
                self.cond.notify_all()

    def wait_for(self, count: int, timeout_s: float = 15.0) -> list[dict]:
        """The messages once there are ``count`` (fewer if the timeout passes first)."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= count, timeout_s)
            return list(self.messages)

    def close(self, *, unlink: bool = False) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.sock.close()
        if unlink:
            self.path.unlink(missing_ok=True)
        self._thread.join(5)
