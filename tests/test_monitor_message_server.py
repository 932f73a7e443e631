"""The monitor's message server with an inline handler (the notification socket's), over a real
UNIX socket: the handler runs in the I/O thread, the close comes once it returned, an oversized
message is refused and read to its end (no reset), a failing handler costs only its message, what
it defers runs in a worker; and the notification handler defers exactly the lifecycle notices."""

import contextlib
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from faasload.clock import FakeClock
from monitor.cgroups import CgroupV2Reader
from monitor.discovery import Discovery, DockerContainer
from monitor.handlers import Handlers
from monitor.registry import Registry
from monitor.servers import MessageServer, ReadOutcome
from tests.fixtures.monitor import send_raw

V2 = Path(__file__).parent / "fixtures_data" / "cgroup_v2"
DOCKER = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"
ACT = "0123456789abcdef0123456789abcdef"


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


@contextlib.contextmanager
def serving(tmp_path, handler) -> Iterator[MessageServer]:
    """An inline server on ``tmp_path/notif`` (messages of 1 KiB at most, 1 s to send one), stopped after."""
    server = MessageServer("notification", tmp_path / "notif", handler, mode=0o600, max_message_bytes=1024,
                           read_timeout_s=1.0, inline=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_handler_runs_in_the_io_thread_and_the_close_comes_after_it(tmp_path):
    handler = Handler(delay_s=0.05)
    with serving(tmp_path, handler) as server:
        sent_s = time.monotonic()
        assert send_raw(server.path, b'{"action": "rm", "container": "a"}\n') == b""
        closed_s = time.monotonic()
        assert len(handler.seen) == 1
        raw, outcome, thread, handled_s = handler.seen[0]
        assert raw == b'{"action": "rm", "container": "a"}' and outcome is ReadOutcome.COMPLETE
        assert thread == "notification-io"
        assert sent_s + 0.05 <= handled_s <= closed_s


def test_an_oversized_message_is_refused_then_read_to_its_end_without_a_reset(tmp_path):
    handler = Handler()
    with serving(tmp_path, handler) as server:
        assert send_raw(server.path, b"A" * 5000) == b""   # a reset would raise ConnectionResetError
        assert [(len(raw), outcome) for raw, outcome, _, _ in handler.seen] == [(1025, ReadOutcome.TOO_LARGE)]
        assert send_raw(server.path, b'{"ok": 1}\n') == b""
        assert handler.seen[-1][:2] == (b'{"ok": 1}', ReadOutcome.COMPLETE)


def test_an_oversized_message_never_finished_is_closed_at_the_read_timeout(tmp_path):
    handler = Handler()
    with serving(tmp_path, handler) as server:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(server.path))
            sock.sendall(b"A" * 5000)    # and never shuts down its side
            began = time.monotonic()
            assert sock.recv(1) == b""
            assert 0.5 <= time.monotonic() - began <= 3.0
        assert [outcome for _, outcome, _, _ in handler.seen] == [ReadOutcome.TOO_LARGE]


def test_a_failing_handler_costs_only_its_message(tmp_path, caplog):
    handler = Handler()
    with serving(tmp_path, handler) as server:
        assert send_raw(server.path, b"boom") == b""
        assert send_raw(server.path, b"after\n") == b""
        assert [raw for raw, _, _, _ in handler.seen] == [b"after"]
        assert "handler failed on b'boom'" in caplog.text


def test_what_the_handler_defers_runs_in_a_worker_and_holds_only_its_own_connection(tmp_path):
    """A lifecycle notice may block (Docker's inspect): deferred, it delays neither the notices after
    it nor the reading; its connection closes once the deferred part returned."""
    release = threading.Event()
    ran: list[tuple[str, float]] = []

    def slow() -> None:
        release.wait(10)
        ran.append((threading.current_thread().name, time.monotonic()))

    handler = Handler()

    def handle(raw: bytes, outcome: ReadOutcome):
        if raw == b"slow":
            return slow
        return handler(raw, outcome)

    with serving(tmp_path, handle) as server:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
                held.settimeout(10.0)
                held.connect(str(server.path))
                held.sendall(b"slow\n")
                held.shutdown(socket.SHUT_WR)
                began = time.monotonic()
                assert send_raw(server.path, b"fast\n", timeout_s=2.0) == b""   # not behind the slow one
                assert [raw for raw, _, _, _ in handler.seen] == [b"fast"]
                assert time.monotonic() - began < 1.0 and not ran
                release.set()
                assert held.recv(1) == b""                                       # closed once applied
                closed_s = time.monotonic()
            assert len(ran) == 1 and ran[0][0].startswith("notification-conn") and ran[0][1] <= closed_s
        finally:
            release.set()   # before the server stops: its workers are joined


def test_the_notification_handler_defers_lifecycle_notices_and_applies_activation_ones(tmp_path):
    """A lifecycle notice may ask Docker (here: an inspect that answers only when told): it is
    returned for a worker, unapplied; an activation's notice is applied at once."""
    tree = tmp_path / "cg"
    shutil.copytree(V2, tree)
    inspected = threading.Event()

    def inspect(container: str) -> DockerContainer:
        inspected.set()
        return DockerContainer(container, None)

    reader = CgroupV2Reader(tree)
    registry = Registry(reader, Discovery(reader, inspect),
                        FakeClock(), resolution_s=0.01, maxage_s=60, retention_s=60)
    handlers = Handlers(registry, 0.01)
    try:
        def notice(message: dict) -> bytes:
            return json.dumps(message).encode()
        deferred = handlers.notification(notice({"action": "run", "container": DOCKER}), ReadOutcome.COMPLETE)
        assert callable(deferred) and not inspected.is_set() and DOCKER not in registry.containers
        assert handlers.notification(notice({"action": "activation_start", "container": DOCKER, "activation": ACT,
                                             "date": 1.0}), ReadOutcome.COMPLETE) is None
        assert registry.activation_binding(ACT) is not None
        deferred()
        assert DOCKER in registry.containers
        assert handlers.notifications == 2
    finally:
        registry.close()
