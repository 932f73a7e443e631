"""Container discovery from Docker itself: no cooperation from the invoker (issue 8).

Two sources feed the same :class:`~monitor.registry.Registry` the notification socket feeds (a
container announced by both is one container; every state change is idempotent):

* **Docker's event stream** (``start``/``unpause`` → run, ``pause`` → pause, ``die``/``destroy``
  → rm), in its own thread, after a listing of the containers that exist at (re)connection.  Only
  OpenWhisk action containers are followed: their name matches ``name_pattern``
  (:data:`faasload.openwhisk_names.DEFAULT_NAME_PATTERN`) or they carry one of ``labels``.  State
  changes are dated with the daemon's own ``timeNano``.  A broken stream is reopened with
  exponential backoff (and the listing redone, so nothing missed in between stays wrong); the
  thread never dies of a Docker error.
* **The freezer state** of every followed container, polled every ``freezer_period_s``: OpenWhisk's
  invoker pauses with ``runc pause`` by default, behind Docker's back (no event, and ``docker ps``
  still says "running").  Frozen → pause, thawed → resume.  The running stretch is widened to the
  uncertainty of the poll (resumed at the last frozen read, paused at the first frozen read) so
  that attribution (:mod:`monitor.attribution`) never misses the right container.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from faasload.clock import Clock
from faasload.monitor_protocol import ContainerNotice, Lifecycle
from faasload.openwhisk_names import DEFAULT_NAME_PATTERN

from .cgroups import CgroupDirs, open_regular
from .registry import Registry, State

log = logging.getLogger(__name__)

EVENTS = ("create", "start", "pause", "unpause", "die", "destroy")
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0


@dataclass(frozen=True, slots=True)
class Recogniser:
    """Which containers are OpenWhisk action containers: by name, or by label."""

    name_pattern: re.Pattern = field(default_factory=lambda: re.compile(DEFAULT_NAME_PATTERN))
    #: ``key`` (any value) or ``key=value``.
    labels: tuple[str, ...] = ()

    def __call__(self, name: str, labels: dict[str, str]) -> bool:
        if self.name_pattern.search(name):
            return True
        for wanted in self.labels:
            key, equals, value = wanted.partition("=")
            if key in labels and (not equals or labels[key] == value):
                return True
        return False


# --------------------------------------------------------------------------- freezer

def freezer_file(reader, dirs: CgroupDirs) -> Path:
    """The file telling whether a container is frozen (paused): v1 ``freezer.state`` of the
    freezer controller, v2 ``cgroup.events``."""
    if reader.version == 2:
        return dirs.memory / "cgroup.events"
    relative = dirs.memory.relative_to(Path(reader.root) / "memory")
    return Path(reader.root) / "freezer" / relative / "freezer.state"


def is_frozen(content: bytes) -> bool | None:
    """``freezer.state`` (THAWED/FREEZING/FROZEN) or ``cgroup.events`` (``frozen 0|1``) content."""
    if content.startswith(b"THAWED"):
        return False
    if content.startswith((b"FROZEN", b"FREEZING")):
        return True
    for line in content.splitlines():
        if line.startswith(b"frozen "):
            return line.split()[1] != b"0"
    return None


@dataclass(slots=True)
class _Watched:
    fd: int | None = None
    last_read_s: float = 0.0


class FreezerWatch:
    """Polls the freezer state of the containers Docker events follow (``tick()`` + clock)."""

    def __init__(self, registry: Registry, clock: Clock, period_s: float):
        self.registry = registry
        self.clock = clock
        self.period_s = period_s
        self.watched: dict[str, _Watched] = {}
        self.pauses_seen = 0
        self.resumes_seen = 0
        self._lock = threading.Lock()

    def watch(self, container: str) -> None:
        with self._lock:
            self.watched.setdefault(container, _Watched())

    def forget(self, container: str) -> None:
        with self._lock:
            watched = self.watched.pop(container, None)
        if watched is not None and watched.fd is not None:
            os.close(watched.fd)

    def tick(self) -> None:
        with self._lock:
            items = list(self.watched.items())
        for container, watched in items:
            entry = self.registry.containers.get(container)
            if entry is None or entry.state is State.REMOVED:
                continue
            if watched.fd is None:
                if entry.dirs is None:
                    continue
                try:
                    watched.fd = open_regular(freezer_file(self.registry.reader, entry.dirs))
                except (OSError, ValueError) as exc:
                    log.debug("container %s: no freezer state (%s)", container, exc)
                    continue
            try:
                frozen = is_frozen(os.pread(watched.fd, 256, 0))
            except OSError:
                continue  # the cgroup is gone: Docker's die/destroy will say so
            now_s = self.clock.epoch_s()
            if frozen and entry.state is State.RUNNING:
                self.pauses_seen += 1
                self.registry.apply(ContainerNotice(Lifecycle.PAUSE, container), at_s=now_s)
                log.debug("container %s frozen: paused", container)
            elif frozen is False and entry.state is State.PAUSED:
                self.resumes_seen += 1
                self.registry.apply(ContainerNotice(Lifecycle.RESUME, container), at_s=watched.last_read_s or now_s)
                log.debug("container %s thawed: running", container)
            watched.last_read_s = now_s

    def run(self, stop: threading.Event) -> None:
        due_s = self.clock.monotonic_s()
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # never let the watch die  # noqa: BLE001
                log.exception("freezer watch tick failed")
            due_s = max(due_s + self.period_s, self.clock.monotonic_s())
            self.clock.sleep_until(due_s, stop)

    def close(self) -> None:
        for container in list(self.watched):
            self.forget(container)


# --------------------------------------------------------------------------- events


def _event_time_s(event: dict[str, Any]) -> float | None:
    if "timeNano" in event:
        return event["timeNano"] / 1e9
    return float(event["time"]) if "time" in event else None


class EventStream(Protocol):
    """What ``docker.DockerClient.events(decode=True)`` returns (the SDK has no type hints)."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...
    def close(self) -> None: ...


class DockerEvents:
    """Follows Docker's container events into ``registry``.  ``client_factory()`` returns a
    ``docker.DockerClient`` (or raises); ``start()``/``stop()`` own the two threads."""

    def __init__(self, registry: Registry, client_factory: Callable[[], Any], clock: Clock, *,
                 recognise: Recogniser | None = None, freezer_period_s: float = 0.01):
        self.registry = registry
        self.client_factory = client_factory
        self.clock = clock
        self.recognise = recognise or Recogniser()
        self.freezer = FreezerWatch(registry, clock, freezer_period_s)
        self.followed: dict[str, str] = {}  # full id -> registry key
        self.events_seen = 0
        self.reconnects = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._stream: EventStream | None = None
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------- state changes

    def _key(self, full_id: str) -> str:
        """The registry's key for a Docker id: a short id the socket announced, else the full id."""
        known = self.followed.get(full_id)
        if known is not None:
            return known
        if full_id not in self.registry.containers:
            for key in list(self.registry.containers):
                if len(key) >= 12 and full_id.startswith(key):
                    return key
        return full_id

    def _follow(self, full_id: str, name: str) -> str:
        key = self._key(full_id)
        if full_id not in self.followed:
            log.info("following OpenWhisk container %s (%s)", name, full_id[:12])
        self.followed[full_id] = key
        return key

    def _apply(self, full_id: str, action: Lifecycle, name: str, at_s: float | None) -> None:
        key = self._follow(full_id, name)
        self.registry.apply(ContainerNotice(action, key), at_s=at_s)
        self.registry.set_name(key, name)
        if action is Lifecycle.RM:
            self.freezer.forget(key)
            del self.followed[full_id]
        else:
            self.freezer.watch(key)

    def handle(self, event: dict[str, Any]) -> None:
        """Apply one decoded Docker event (anything else than a followed container's is ignored)."""
        actor = event.get("Actor") or {}
        full_id = actor.get("ID") or event.get("id")
        attributes = actor.get("Attributes") or {}
        name = attributes.get("name", "")
        status = event.get("Action") or event.get("status")
        if not full_id or status not in _EVENT_ACTIONS:
            return
        if full_id not in self.followed and not self.recognise(name, attributes):
            return
        self.events_seen += 1
        action = _EVENT_ACTIONS[status]
        if action is None:  # create: nothing runs yet
            return
        if action is Lifecycle.RM and full_id not in self.followed:
            return
        self._apply(full_id, action, name, _event_time_s(event))

    def sync(self, containers: Iterable[dict[str, Any]]) -> None:
        """Bring the registry in line with a listing (``APIClient.containers(all=True)``)."""
        present = set()
        for item in containers:
            full_id = item["Id"]
            name = (item.get("Names") or ["/"])[0].lstrip("/")
            if full_id not in self.followed and not self.recognise(name, item.get("Labels") or {}):
                continue
            state = item.get("State")
            if state == "running":
                present.add(full_id)
                self._apply(full_id, Lifecycle.RUN, name, None)
            elif state == "paused":
                present.add(full_id)
                self._apply(full_id, Lifecycle.PAUSE, name, None)
        for full_id in [f for f in self.followed if f not in present]:
            self._apply(full_id, Lifecycle.RM, "", None)

    # ----------------------------------------------------------------- threads

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._follow_events, name="docker-events", daemon=True),
                         threading.Thread(target=self.freezer.run, args=(self._stop,), name="freezer", daemon=True)]
        for thread in self._threads:
            thread.start()

    def _follow_events(self) -> None:
        backoff_s = BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                self._session()
                backoff_s = BACKOFF_FIRST_S
                if not self._stop.is_set():
                    log.warning("Docker event stream ended; reconnecting")
            except Exception as exc:  # a dead daemon must not kill the monitor  # noqa: BLE001
                if not self._stop.is_set():
                    log.warning("Docker events: %s; retrying in %.1f s", exc, backoff_s)
                self.connected.clear()
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
            self.reconnects += 1

    def _session(self) -> None:
        client = self.client_factory()
        try:
            # subscribe first, then list: nothing can happen between the two unseen
            stream: EventStream = client.events(decode=True, filters={"type": "container", "event": list(EVENTS)})
            self._stream = stream
            if self._stop.is_set():
                return
            self.sync(client.api.containers(all=True))
            self.connected.set()
            for event in stream:
                if self._stop.is_set():
                    return
                try:
                    self.handle(event)
                except Exception:  # one odd event must not end the stream  # noqa: BLE001
                    log.exception("Docker event not applied: %s", event)
        finally:
            self.connected.clear()
            self._close_stream()
            client.close()

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # already closed  # noqa: BLE001
                pass

    def stop(self) -> None:
        self._stop.set()
        self._close_stream()
        for thread in self._threads:
            thread.join(timeout=5)
        self.freezer.close()


_EVENT_ACTIONS: dict[str, Lifecycle | None] = {
    "create": None,
    "start": Lifecycle.RUN,
    "unpause": Lifecycle.RESUME,
    "pause": Lifecycle.PAUSE,
    "die": Lifecycle.RM,
    "destroy": Lifecycle.RM,
}


def client_factory(base_url: str, timeout_s: float = 5.0) -> Callable[[], Any]:
    """A factory of docker SDK clients for ``base_url`` (pings, so a dead daemon raises)."""

    def connect():
        import docker
        client = docker.DockerClient(base_url=base_url, timeout=timeout_s)
        client.ping()
        return client

    return connect
