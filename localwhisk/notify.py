"""Notifications to the FaaSLoad monitor's socket (docs/monitor.md, Notification socket), never blocking for long.

One JSON object per connection on a UNIX stream socket; connect and send within
``connect_timeout_s`` (≤ 50 ms), else drop the message (counted, logged at DEBUG).

**Re-announcing after a monitor restart.**  A monitor that starts knows nothing of the containers
that already run, and localwhisk's process containers are no Docker containers it could list.  So
localwhisk tells it again: every live container of the pool (``run``, or ``run`` then ``pause``
for a paused one) whenever the monitor at the socket is not the one that last received them.  The
monitor at the socket is told apart by the socket file's identity (device, inode, change time): a
monitor creates its socket when it starts (it unlinks a stale one and binds anew), so a restart
always changes it.  The identity is checked before every notice (a ``stat``, ~2 µs) and every
``WATCH_PERIOD_S`` by :class:`MonitorWatch`, so the monitor has the containers within that period
of its start, before their next activation, and in any case before that activation's
``activation_start`` reaches it; an activation starting within ``SETTLE_S`` of a re-announcement
waits for the rest of it, so that the monitor has a sample of its container from before its start
(the baseline of its answer).  A failed send forgets the identity, so the next success re-announces.

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
#: After a re-announcement, activations wait until this long after it to start, so that the new
#: monitor has sampled their container before (5 periods of its default 10 ms sampling).
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
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(self.socket_path)
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            with self._lock:
                self.dropped += 1
                self._announced_to = None  # whoever listens next gets the containers again
            LOG.debug("monitor notification dropped (%s): %s", exc, message)
            return False
        with self._lock:
            self.sent += 1
        return True

    def _identity(self) -> _SocketIdentity | None:
        try:
            info = os.stat(self.socket_path)
        except OSError:
            return None
        return _SocketIdentity(info.st_dev, info.st_ino, info.st_ctime_ns)

    def check_monitor(self) -> bool:
        """Re-announce the live containers if the monitor at the socket is not the one that last
        received them; True when it did (and every notice went through)."""
        if not self.socket_path or self.live_containers is None:
            return False
        identity = self._identity()
        if identity is None or identity == self._announced_to:
            return False
        with self._order:
            identity = self._identity()
            if identity is None or identity == self._announced_to:
                return False  # another thread just did it
            live = list(self.live_containers())
            delivered = all([self._deliver(_notice("run", c.id, c.cgroup)) for c in live]
                            + [self._deliver(_notice("pause", c.id, None)) for c in live if c.paused])
            if not delivered:
                return False
            with self._lock:
                self._announced_to = identity
                self.reannouncements += 1
                if live:
                    self._settled_at_s = time.monotonic() + SETTLE_S
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
        """An activation's start or end notice.  A start within ``SETTLE_S`` of a re-announcement
        waits for the rest of it and is dated when it ends (the activation starts after this returns)."""
        if not self.socket_path:
            return False
        self.check_monitor()
        if action == "activation_start":
            wait_s = self._settled_at_s - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
                date_s = time.time()
        return self._deliver({"action": action, "container": container_id, "activation": activation_id,
                              "date": date_s})


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
                notifier.check_monitor()
            except Exception:  # noqa: BLE001 (a broken snapshot must not end the watch)
                LOG.exception("re-announcing containers to the monitor at %s failed", notifier.socket_path)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.period_s):
            self.tick()
