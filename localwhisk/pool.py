"""The container pool: warm reuse, a user-memory budget, pause after a grace, idle eviction.

As OpenWhisk's invoker ``ContainerPool``: a container runs one activation at a time
(intra-container concurrency 1); a free container of the same action (same invoking
namespace, same action version) is reused warm; otherwise a new one is created when the
memory budget allows, after evicting idle containers of other actions (least recently
used first); else the activation waits for memory. Free containers are paused after
``pause_grace_s`` (Docker) and removed after ``keepalive_s``. ``tick()`` does one round of
pausing/eviction; ``run()`` repeats it.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .backends import Backend, Container, ContainerError
from .runtime_client import RuntimeConnection

LOG = logging.getLogger(__name__)


class PoolFull(RuntimeError):
    """No memory became free for a new container before the deadline."""


class Slot(enum.Enum):
    BUSY = "busy"
    WARM = "warm"        # free, running (within the pause grace)
    PAUSING = "pausing"
    PAUSED = "paused"    # free, paused


@dataclass(eq=False)
class Pooled:
    container: Container
    key: tuple
    memory_mb: int
    state: Slot = Slot.BUSY
    last_used_s: float = 0.0
    activations: int = 0
    paused: bool = field(default=False)
    _runtime: RuntimeConnection | None = field(default=None, repr=False)

    def runtime(self) -> RuntimeConnection:
        """The kept connection to the container's proxy (opened by its first call)."""
        if self._runtime is None:
            self._runtime = RuntimeConnection(self.container.port, socket_path=self.container.socket_path)
        return self._runtime

    def close_runtime(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()


class ContainerPool:
    def __init__(self, backend: Backend, *, capacity_mb: int, keepalive_s: float, pause_grace_s: float,
                 notify: Callable[[str, Container], None], clock: Callable[[], float] = time.monotonic):
        self.backend = backend
        self.capacity_mb = capacity_mb
        self.keepalive_s = keepalive_s
        self.pause_grace_s = pause_grace_s
        self.notify = notify
        self.clock = clock
        self.used_mb = 0
        self._free: list[Pooled] = []       # most recently used last
        self._all: set[Pooled] = set()
        self._cond = threading.Condition()
        self._stopped = threading.Event()

    # ------------------------------------------------------------------ activations

    def acquire(self, key: tuple, memory_mb: int, name: Callable[[], str], env: dict[str, str],
                deadline_s: float, network: bool = False) -> tuple[Pooled, bool]:
        """A container for ``key``: ``(pooled, cold)``; resumes a paused one; may wait for memory.
        ``network``: a new container gets a network (the action asked for it)."""
        evicted: list[Pooled] = []
        with self._cond:
            while True:
                warm = next((p for p in reversed(self._free) if p.key == key), None)
                if warm is not None:
                    self._free.remove(warm)
                    warm.state = Slot.BUSY
                    break
                if any(p.key == key and p.state is Slot.PAUSING for p in self._all):
                    # Being paused right now: wait for it, as OpenWhisk's ContainerProxy keeps the
                    # run for the pausing container and resumes it (warm), not a new cold one.
                    remaining = deadline_s - self.clock()
                    if remaining <= 0:
                        raise PoolFull("a container of this action did not finish pausing in time")
                    self._cond.wait(remaining)
                    continue
                if self.used_mb + memory_mb <= self.capacity_mb:
                    self.used_mb += memory_mb
                    break
                if self._free:
                    victim = self._free.pop(0)
                    self._forget(victim)
                    evicted.append(victim)
                    continue
                remaining = deadline_s - self.clock()
                if remaining <= 0:
                    raise PoolFull(f"no {memory_mb} MB free in the {self.capacity_mb} MB container pool")
                self._cond.wait(remaining)
        for victim in evicted:
            self._destroy(victim)
        if warm is not None:
            if warm.paused:
                warm.container.resume()
                warm.paused = False
                self.notify("resume", warm.container)
            warm.activations += 1
            return warm, False
        try:
            container = self.backend.create(name(), memory_mb, env, network)
        except Exception:
            with self._cond:
                self.used_mb -= memory_mb
                self._cond.notify_all()
            raise
        pooled = Pooled(container, key, memory_mb, activations=1)
        with self._cond:
            self._all.add(pooled)
        self.notify("run", container)
        if self._stopped.is_set():
            self.release(pooled, healthy=False)
            raise PoolFull("the container pool is stopping")
        return pooled, True

    def release(self, pooled: Pooled, healthy: bool) -> None:
        """Give a container back: kept warm when ``healthy``, else destroyed at once."""
        with self._cond:
            if pooled not in self._all:
                return  # removed by stop()
            if healthy and not self._stopped.is_set():
                pooled.state = Slot.WARM
                pooled.last_used_s = self.clock()
                self._free.append(pooled)
                self._cond.notify_all()
                return
            self._forget(pooled)
        self._destroy(pooled)

    def _forget(self, pooled: Pooled) -> None:
        """Under the lock: the container leaves the pool and its memory is free (once)."""
        if pooled not in self._all:
            return
        self._all.discard(pooled)
        self.used_mb -= pooled.memory_mb
        self._cond.notify_all()

    def _destroy(self, pooled: Pooled) -> None:
        pooled.close_runtime()
        try:
            pooled.container.destroy()
        except Exception:  # a container that cannot be removed must not stop the pool
            LOG.exception("cannot destroy container %s", pooled.container.id)
        self.notify("rm", pooled.container)

    # ------------------------------------------------------------------ housekeeping

    def tick(self) -> float:
        """Pause containers past the grace, evict those past the keep-alive; the next due time."""
        now = self.clock()
        to_pause, to_evict = [], []
        next_due = now + self.keepalive_s
        with self._cond:
            for pooled in list(self._free):
                idle_s = now - pooled.last_used_s
                if idle_s >= self.keepalive_s:
                    self._free.remove(pooled)
                    self._forget(pooled)
                    to_evict.append(pooled)
                    continue
                next_due = min(next_due, pooled.last_used_s + self.keepalive_s)
                if self.backend.supports_pause and pooled.state is Slot.WARM:
                    if idle_s >= self.pause_grace_s:
                        self._free.remove(pooled)
                        pooled.state = Slot.PAUSING
                        to_pause.append(pooled)
                    else:
                        next_due = min(next_due, pooled.last_used_s + self.pause_grace_s)
        for pooled in to_evict:
            self._destroy(pooled)
        for pooled in to_pause:
            self._pause(pooled)
        return next_due

    def _pause(self, pooled: Pooled) -> None:
        pooled.close_runtime()  # as OpenWhisk's suspend: the connection first, then the container
        try:
            pooled.container.pause()
        except Exception:  # noqa: BLE001 (a container that cannot pause is removed)
            LOG.exception("cannot pause container %s", pooled.container.id)
            with self._cond:
                self._forget(pooled)      # (notifies an acquire waiting for this pause)
            self._destroy(pooled)
            return
        pooled.paused = True
        self.notify("pause", pooled.container)
        with self._cond:
            pooled.state = Slot.PAUSED
            if pooled not in self._all:
                return  # removed by stop() meanwhile
            if self._stopped.is_set():
                self._forget(pooled)
            else:
                self._free.append(pooled)   # keeps its last_used_s for the keep-alive
                self._free.sort(key=lambda p: p.last_used_s)
                self._cond.notify_all()
                return
        self._destroy(pooled)

    def run(self) -> None:
        """Housekeeping loop until :meth:`stop`; wakes at the next due time or on release."""
        while not self._stopped.is_set():
            next_due = self.tick()
            with self._cond:
                if not self._stopped.is_set():
                    self._cond.wait(max(0.0, min(next_due - self.clock(), 1.0)))

    def stop(self) -> None:
        """Stop housekeeping and remove every container, busy ones included (their activations
        end as developer errors)."""
        self._stopped.set()
        with self._cond:
            everything = list(self._all)
            self._free = []
            for pooled in everything:
                self._forget(pooled)
            self._cond.notify_all()
        for pooled in everything:
            self._destroy(pooled)

    def live(self) -> list[tuple[Container, bool]]:
        """Every container of the pool and whether it is paused (to announce them again)."""
        with self._cond:
            return [(p.container, p.paused) for p in self._all]

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"containers": len(self._all), "free": len(self._free), "used_mb": self.used_mb}


__all__ = ["ContainerPool", "ContainerError", "PoolFull", "Pooled"]
