"""Notifications to the FaaSLoad monitor's socket (docs/monitor.md, Notification socket), never blocking for long.

One JSON object per connection on a UNIX stream socket; connect and send within
``connect_timeout_s`` (≤ 50 ms), else drop the message (counted, logged at DEBUG).

Every notice then waits, within the same timeout, for the monitor to close the connection, which
it does once it has handled the notice: so the monitor has found a new container's cgroup before
its first activation starts, an activation's start notice has reset the container's kernel peak
counter (docs/monitor.md, Kernel peaks) before the action runs, and the end of one activation is
handled before the start of the next.

**Re-announcing after a monitor restart.**  A monitor that starts knows nothing of the containers
that already run, and localwhisk's process containers are no Docker containers it could list.  So
localwhisk tells it again: every live container of the pool (``run``, or ``run`` then ``pause``
for a paused one) whenever the monitor at the socket is not the one that last received them.  The
monitor at the socket is told apart by the socket file's identity (device, inode, change time): a
monitor creates its socket when it starts (it unlinks a stale one and binds anew), so a restart
always changes it.  The identity is checked before every notice (a ``stat``, ~2 µs) and every
``WATCH_PERIOD_S`` by :class:`MonitorWatch`, so the monitor has the containers within that period
of its start, before their next activation, and in any case before that activation's
``activation_start`` reaches it.  A re-announcement waits for the monitor to have handled its
notices too, outside the ordering lock (the watch's ``HANDLED_BUDGET_S`` at most in all, one on
the way of a notice the connect timeout), and an activation starting within ``SETTLE_S`` after a
re-announcement waits for the rest, so that the monitor has a sample of its container from before
its start (the baseline of its answer): the monitor samples a container once when it finds its
cgroup, before it closes the notice's connection; ``SETTLE_S`` is the margin for a monitor too
slow to close it within the wait.
A failed send forgets the identity, so the next success re-announces; a failed re-announcement
to the same monitor is retried ``RETRY_S`` later (a new one at once), so a stuck monitor costs a
notice on its way at most one connect timeout a second more.

Why localwhisk announces rather than the monitor scanning localwhisk's cgroup parent: localwhisk
knows its containers exactly (their ids, whether paused, which invoker and so which monitor each
belongs to, ``monitor:notification_sockets``), while the parent is under localwhisk's own cgroup,
wherever it was started (a login session, a systemd unit or scope, a test's cgroup), and holds the
containers of every invoker of that localwhisk; a scan would have to guess the place and could
adopt containers another monitor owns.  Detection by the socket's identity rather than by failed
sends: a monitor restarted between two notices makes no send fail.  (A monitor behind a socket
that outlives it, systemd socket activation, would not be detected; the project's units do not
use it.)  OpenWhisk's own invoker announces nothing: there the monitor lists Docker's containers
when it starts (monitor/docker_events.py).

Ordering: the snapshot of the pool and every container notice are taken and sent under one lock,
and the pool changes a container's state before it notifies, so a re-announcement never undoes a
later ``pause``, ``resume`` or ``rm``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

LOG = logging.getLogger(__name__)

#: How often :class:`MonitorWatch` looks for a (re)started monitor.
WATCH_PERIOD_S = 0.1
#: The watch's re-announcement waits for the monitor to have applied each notice (it closes the
#: connection then), for this long at most in all.
HANDLED_BUDGET_S = 0.5
#: After a failed re-announcement, the next one waits this long.
RETRY_S = 1.0
#: After a re-announcement has been handled (or its wait ran out), activations wait this long more
#: to start: a margin for a slow monitor to have taken its first sample of their container.
SETTLE_S = 0.05


class LiveContainer(NamedTuple):
    """A container to announce again: its id, its cgroup path (or None), whether it is paused."""

    id: str
    cgroup: str | None
    paused: bool


class _SocketIdentity(NamedTuple):
    device: int
    inode: int
    changed_ns: int


class MonitorNotifier:
    def __init__(self, socket_path: str, timeout_s: float = 0.05,
                 live_containers: Callable[[], Iterable[LiveContainer]] | None = None):
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        #: What to announce again to a new monitor (the pool's containers); set once the pool exists.
        self.live_containers = live_containers
        self.sent = 0
        self.dropped = 0
        self.reannouncements = 0
        self._lock = threading.Lock()
        #: Container notices and re-announcements go out one at a time, in order.
        self._order = threading.Lock()
        self._announced_to: _SocketIdentity | None = None
        self._settled_at_s = 0.0  # monotonic: the last re-announcement + SETTLE_S
        #: The monitor a re-announcement failed to, and when to try it again (monotonic s).
        self._failed: tuple[_SocketIdentity | None, float] = (None, 0.0)

    @property
    def enabled(self) -> bool:
        return bool(self.socket_path)

    def send(self, message: dict) -> bool:
        """Deliver one message (after re-announcing the live containers to a new monitor);
        False (and counted) when it was dropped."""
        if not self.socket_path:
            return False
        self.check_monitor()
        return self._deliver(message)

    def _deliver(self, message: dict) -> bool:
        """Send one message and wait (within the timeout) for the monitor to have handled it."""
        deadline_s = time.monotonic() + self.timeout_s
        sock = self._send(message)
        if sock is None:
            return False
        try:
            _wait_closed([sock], deadline_s)
        finally:
            sock.close()
        return True

    def _send(self, message: dict) -> socket.socket | None:
        """Send one message; the connection, write side shut, or None (counted) when it was dropped."""
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout_s)
            sock.connect(self.socket_path)
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            sock.close()
            with self._lock:
                self.dropped += 1
                self._announced_to = None  # whoever listens next gets the containers again
            LOG.debug("monitor notification dropped (%s): %s", exc, message)
            return None
        with self._lock:
            self.sent += 1
        return sock

    def _identity(self) -> _SocketIdentity | None:
        try:
            info = os.stat(self.socket_path)
        except OSError:
            return None
        return _SocketIdentity(info.st_dev, info.st_ino, info.st_ctime_ns)

    def _due(self) -> bool:
        identity = self._identity()
        if identity is None or identity == self._announced_to:
            return False
        failed_identity, retry_at_s = self._failed
        return identity != failed_identity or time.monotonic() >= retry_at_s

    def check_monitor(self, wait_handled_s: float | None = None) -> bool:
        """Re-announce the live containers if the monitor at the socket is not the one that last
        received them; True when it did (and every notice went through).  Then wait, without
        holding up other notices, for the monitor to have handled them: ``wait_handled_s`` at most
        in all (the watch passes ``HANDLED_BUDGET_S``), the connect timeout by default."""
        wait_s = self.timeout_s if wait_handled_s is None else wait_handled_s
        if not self.socket_path or self.live_containers is None or not self._due():
            return False
        sent: list[socket.socket] = []
        try:
            with self._order:
                if not self._due():
                    return False  # another thread just did it
                identity = self._identity()
                live = list(self.live_containers())
                for message in ([_notice("run", c.id, c.cgroup) for c in live]
                                + [_notice("pause", c.id, None) for c in live if c.paused]):
                    sock = self._send(message)
                    if sock is None:
                        self._failed = (identity, time.monotonic() + RETRY_S)  # a stuck monitor: one timeout a second
                        return False
                    sent.append(sock)
                with self._lock:
                    self._announced_to = identity
                    self.reannouncements += 1
                    if live:  # activations wait (activation()) until the monitor has sampled them
                        self._settled_at_s = time.monotonic() + wait_s + SETTLE_S
            if live:
                _wait_closed(sent, time.monotonic() + wait_s)
                with self._lock:
                    self._settled_at_s = time.monotonic() + SETTLE_S
        finally:
            for sock in sent:
                sock.close()
        LOG.log(logging.INFO if live else logging.DEBUG, "monitor at %s (re)started: announced %d live "
                "container(s) to it", self.socket_path, len(live))
        return True

    def container(self, action: str, container_id: str, cgroup: str | None) -> bool:
        if not self.socket_path:
            return False
        self.check_monitor()
        with self._order:
            return self._deliver(_notice(action, container_id, cgroup))

    def activation(self, action: str, container_id: str, activation_id: str, date_s: float) -> bool:
        """An activation's start or end notice.  A start soon after a re-announcement waits until
        the monitor has sampled the containers (``SETTLE_S`` after it applied them) and is then
        dated anew (the activation starts after this returns)."""
        if not self.socket_path:
            return False
        self.check_monitor()
        if action == "activation_start" and self._settled_at_s > time.monotonic():
            while (wait_s := self._settled_at_s - time.monotonic()) > 0:
                time.sleep(min(wait_s, 0.005))  # the watch may bring the instant forward
            date_s = time.time()
        return self._deliver({"action": action, "container": container_id, "activation": activation_id,
                              "date": date_s})


def _wait_closed(socks: list[socket.socket], deadline_s: float) -> None:
    """Until the monitor closed every connection, having handled their notices (it answers nothing
    on this socket); a timeout is not a failure: the notice was delivered, the monitor is only slow."""
    for sock in socks:
        try:
            while True:
                sock.settimeout(max(0.0005, deadline_s - time.monotonic()))
                if not sock.recv(64):
                    break
        except TimeoutError:
            LOG.debug("monitor slow to handle a notification (past its wait)")
            return
        except OSError:  # reset: nothing more to learn
            return


def _notice(action: str, container_id: str, cgroup: str | None) -> dict:
    message = {"action": action, "container": container_id}
    if cgroup:
        message["cgroup"] = cgroup
    return message


class MonitorWatch:
    """Looks for (re)started monitors every ``period_s`` (``tick()`` + ``run(stop)``)."""

    def __init__(self, notifiers: Iterable[MonitorNotifier], period_s: float = WATCH_PERIOD_S):
        self.notifiers = tuple(n for n in notifiers if n.enabled)
        self.period_s = period_s

    def tick(self) -> None:
        for notifier in self.notifiers:
            try:
                notifier.check_monitor(HANDLED_BUDGET_S)
            except Exception:  # noqa: BLE001 (a broken snapshot must not end the watch)
                LOG.exception("re-announcing containers to the monitor at %s failed", notifier.socket_path)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.period_s):
            self.tick()
