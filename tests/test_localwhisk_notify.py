"""localwhisk's notices to the monitor: a (re)started monitor gets the live containers again
(localwhisk/notify.py), against a real UNIX socket listener standing in for the monitor."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from localwhisk.notify import HANDLED_BUDGET_S, SETTLE_S, LiveContainer, MonitorNotifier, MonitorWatch
from tests.notification_sink import NotificationSink


class Listener(NotificationSink):
    """A monitor's notification socket whose file goes away with it (a monitor's restart)."""

    def wait(self, count: int) -> list[dict]:
        deadline = time.monotonic() + 5
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} messages, expected {count}"
            time.sleep(0.005)
        time.sleep(0.02)  # nothing more should come
        return [(m["action"], m["container"]) for m in self.messages]

    def close(self, *, unlink: bool = True) -> None:
        super().close(unlink=unlink)


@pytest.fixture
def setup(tmp_path):
    path = tmp_path / "notif"
    live = [LiveContainer("c-1", "/lw/c-1", False), LiveContainer("c-2", "/lw/c-2", True)]
    notifier = MonitorNotifier(str(path), live_containers=lambda: list(live))
    listeners: list[Listener] = []

    def start() -> Listener:
        listeners.append(Listener(path))
        return listeners[-1]

    yield notifier, live, start
    for listener in listeners:
        if listener.path.exists():
            listener.close()


def test_first_notice_to_a_monitor_follows_the_live_containers(setup):
    notifier, live, start = setup
    monitor = start()
    assert notifier.container("run", "c-3", "/lw/c-3")
    assert monitor.wait(4) == [("run", "c-1"), ("run", "c-2"), ("pause", "c-2"), ("run", "c-3")]
    assert monitor.messages[0] == {"action": "run", "container": "c-1", "cgroup": "/lw/c-1"}
    live.append(LiveContainer("c-3", "/lw/c-3", False))
    assert notifier.activation("activation_start", "c-3", "a" * 32, time.time())
    assert monitor.wait(5)[4:] == [("activation_start", "c-3")]  # the same monitor: nothing again
    assert notifier.reannouncements == 1


def test_a_restarted_monitor_is_told_again_by_the_watch_without_any_notice(setup):
    notifier, live, start = setup
    first = start()
    notifier.container("rm", "c-0", None)
    assert first.wait(4)[-1] == ("rm", "c-0")
    first.close()
    assert not notifier.container("rm", "c-9", None)  # no monitor: dropped, counted
    assert notifier.dropped == 1
    second = start()
    watch = MonitorWatch([notifier])
    watch.tick()
    assert second.wait(3) == [("run", "c-1"), ("run", "c-2"), ("pause", "c-2")]
    watch.tick()
    assert len(second.wait(3)) == 3


def test_restart_between_two_notices_is_noticed_by_the_socket_identity(setup):
    """No send failed (the monitor restarted while localwhisk had nothing to say): the new socket
    file is enough."""
    notifier, _, start = setup
    first = start()
    notifier.container("run", "c-1", "/lw/c-1")
    first.wait(4)
    first.close()
    second = start()
    assert notifier.dropped == 0
    notifier.activation("activation_end", "c-1", "b" * 32, time.time())
    assert second.wait(4) == [("run", "c-1"), ("run", "c-2"), ("pause", "c-2"), ("activation_end", "c-1")]


def test_activation_starting_right_after_a_reannouncement_waits_and_is_dated_after_it(setup):
    notifier, _, start = setup
    monitor = start()
    asked_s = time.time()
    before = time.monotonic()
    notifier.activation("activation_start", "c-1", "c" * 32, asked_s)
    assert time.monotonic() - before >= SETTLE_S * 0.9
    messages = monitor.wait(4)
    assert messages[-1] == ("activation_start", "c-1")
    assert monitor.messages[-1]["date"] >= asked_s + SETTLE_S * 0.9
    ended_s = time.time()
    notifier.activation("activation_end", "c-1", "c" * 32, ended_s)  # an end keeps its date
    monitor.wait(5)
    assert monitor.messages[-1]["date"] == ended_s


def test_no_socket_configured_sends_nothing(tmp_path):
    notifier = MonitorNotifier("", live_containers=lambda: [LiveContainer("c-1", None, False)])
    assert not notifier.container("run", "c-1", None) and not notifier.check_monitor()
    assert MonitorWatch([notifier]).notifiers == ()


def test_a_stuck_monitor_delays_no_container_notice_and_the_watch_is_bounded(setup, tmp_path):
    """The monitor accepts nothing (its backlog holds the connections): the watch's wait for the
    notices to be applied is bounded, and other notices do not wait for it."""
    notifier, _, _ = setup
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.bind(notifier.socket_path)
    stuck.listen(64)
    try:
        watch = MonitorWatch([notifier])
        ticked = threading.Thread(target=watch.tick)
        began = time.monotonic()
        ticked.start()
        time.sleep(0.05)
        notifier.container("run", "c-3", "/lw/c-3")  # not held up by the watch's wait
        assert time.monotonic() - began < HANDLED_BUDGET_S
        ticked.join(5)
        assert time.monotonic() - began < HANDLED_BUDGET_S + 0.3
        assert notifier.reannouncements == 1
    finally:
        stuck.close()


def test_a_new_monitor_right_after_a_failed_reannouncement_is_told_at_once(setup):
    notifier, _, start = setup
    stale = notifier.socket_path
    Path(stale).parent.mkdir(exist_ok=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(stale)  # a killed monitor's socket file: nobody listens
    dead.close()
    assert not notifier.check_monitor()  # refused: retried a second later for this one
    Path(stale).unlink()
    monitor = start()
    notifier.activation("activation_start", "c-1", "d" * 32, time.time())
    assert monitor.wait(4) == [("run", "c-1"), ("run", "c-2"), ("pause", "c-2"), ("activation_start", "c-1")]
