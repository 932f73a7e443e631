"""The monitor's message server with an inline handler (the notification socket's), over a real
UNIX socket: the handler runs in the I/O thread, the close comes once it returned, an oversized
message is refused and read to its end (no reset), a failing handler costs only its message."""

import socket
import threading
import time

from monitor.servers import MessageServer, ReadOutcome
from tests.fixtures.monitor import send_raw


class Handler:
    """Records what it was given and in which thread; sleeps ``delay_s``; raises on b"boom"."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.seen: list[tuple[bytes, ReadOutcome, str, float]] = []

    def __call__(self, raw: bytes, outcome: ReadOutcome) -> None:
        time.sleep(self.delay_s)
        if raw == b"boom":
            raise RuntimeError("a handler bug")
        self.seen.append((raw, outcome, threading.current_thread().name, time.monotonic()))


def start(tmp_path, handler, **options) -> MessageServer:
    server = MessageServer("notification", tmp_path / "notif", handler, mode=0o600, max_message_bytes=1024,
                           read_timeout_s=1.0, inline=True, **options)
    server.start()
    return server


def test_the_handler_runs_in_the_io_thread_and_the_close_comes_after_it(tmp_path):
    handler = Handler(delay_s=0.05)
    server = start(tmp_path, handler)
    try:
        sent_s = time.monotonic()
        assert send_raw(server.path, b'{"action": "rm", "container": "a"}\n') == b""
        closed_s = time.monotonic()
        assert len(handler.seen) == 1
        raw, outcome, thread, handled_s = handler.seen[0]
        assert raw == b'{"action": "rm", "container": "a"}' and outcome is ReadOutcome.COMPLETE
        assert thread == "notification-io"
        assert sent_s + 0.05 <= handled_s <= closed_s
    finally:
        server.stop()


def test_an_oversized_message_is_refused_then_read_to_its_end_without_a_reset(tmp_path):
    handler = Handler()
    server = start(tmp_path, handler)
    try:
        assert send_raw(server.path, b"A" * 5000) == b""   # a reset would raise ConnectionResetError
        assert [(len(raw), outcome) for raw, outcome, _, _ in handler.seen] == [(1025, ReadOutcome.TOO_LARGE)]
        assert send_raw(server.path, b'{"ok": 1}\n') == b""
        assert handler.seen[-1][:2] == (b'{"ok": 1}', ReadOutcome.COMPLETE)
    finally:
        server.stop()


def test_an_oversized_message_never_finished_is_closed_at_the_read_timeout(tmp_path):
    handler = Handler()
    server = start(tmp_path, handler)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(server.path))
            sock.sendall(b"A" * 5000)    # and never shuts down its side
            began = time.monotonic()
            assert sock.recv(1) == b""
            assert 0.5 <= time.monotonic() - began <= 3.0
        assert [outcome for _, outcome, _, _ in handler.seen] == [ReadOutcome.TOO_LARGE]
    finally:
        server.stop()


def test_a_failing_handler_costs_only_its_message(tmp_path, caplog):
    handler = Handler()
    server = start(tmp_path, handler)
    try:
        assert send_raw(server.path, b"boom") == b""
        assert send_raw(server.path, b"after\n") == b""
        assert [raw for raw, _, _, _ in handler.seen] == [b"after"]
        assert "handler failed on b'boom'" in caplog.text
    finally:
        server.stop()
