"""The containers the monitor knows, their states and samples, and activation bindings.

Notices (from the socket, and later from Docker events) go through :meth:`Registry.apply`,
dispatched by a table of named handlers.  The sampler reads :attr:`Registry.running`, a tuple
rebuilt on every state change, so it never takes the registry lock.  Queries copy samples out.
Discovery (paths, Docker's API, opening the cgroup files) runs outside the lock: a slow or
stuck discovery of one container never delays notices and queries of the others.

Retention: a removed container's samples stay queryable ``retention_s`` after ``rm``; a live
container's samples older than ``maxage_s`` are dropped; activation bindings go with their
container, or after ``maxage_s`` + ``retention_s``.

Kernel peaks (:mod:`monitor.kernel_peak`): an activation's start notice resets its container's
peak counter and its end notice reads it, in the notification thread that handles the notice.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from faasload.clock import Clock
from faasload.monitor_protocol import (
    ActivationAnswer,
    ActivationNotice,
    Boundary,
    ContainerNotice,
    ErrorCode,
    KernelPeak,
    Lifecycle,
    ProtocolError,
    Samples,
)

from .attribution import Candidate
from .buffer import SampleBuffer
from .cgroups import CgroupDirs, CgroupError, CgroupHandle
from .discovery import Discovery
from .kernel_peak import LATE_RESET_S, UNAVAILABLE, PeakCounter, Watch

log = logging.getLogger(__name__)

#: An unresolved running container is retried this often, for at most RESOLVE_GIVE_UP_S.
RESOLVE_RETRY_S = 0.5
RESOLVE_GIVE_UP_S = 30.0


class State(str, enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    REMOVED = "removed"


@dataclass(slots=True, eq=False)
class Container:
    id: str
    state: State
    buffer: SampleBuffer
    hint: tuple[tuple[str, str], ...] | None = None
    dirs: CgroupDirs | None = None
    handle: CgroupHandle | None = None
    resolving_since_s: float = 0.0
    removed_at_s: float | None = None
    #: [start, end] epoch seconds of each running stretch (end None while running).
    intervals: list[list] = field(default_factory=list)
    failed_reads: int = 0
    reads: int = 0          # samples read so far (decides which ones read memory.stat)
    resolve_error: str | None = None
    #: Docker's name for it, when Docker events announced it (for attribution, issue 8).
    name: str | None = None
    #: The kernel's peak counter of its cgroup (opened with ``handle``).
    peak: PeakCounter | None = None
    #: Activations bound to it, oldest first (their bindings go when it goes).
    bound: deque[str] = field(default_factory=deque)
    #: ``(id,)``, shared by the bindings of its activations: a notice's container id is a string of
    #: its own (parsed from the message), so a tuple per binding would also keep one more copy of
    #: the 64-character id, 161 bytes per binding in all.
    alone: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.alone = (self.id,)

    def release_files(self) -> CgroupHandle | None:
        """Forget the cgroup's files: the peak counter closed, the sampling handle returned to be
        closed by the caller when no read of it can be in flight (:meth:`Registry.close_retired`)."""
        handle = self.handle
        if self.peak is not None:
            self.peak.close()
        self.handle, self.peak = None, None
        return handle

    def kernel_peak(self) -> KernelPeak:
        """The counter's value for an activation it was not reset for."""
        return UNAVAILABLE if self.peak is None else self.peak.unscoped()


@dataclass(slots=True)
class Binding:
    activation: str
    containers: tuple[str, ...]   # one, unless announced in several (its container's ``alone``, shared)
    start_s: float | None = None
    end_s: float | None = None
    bound_at_s: float = 0.0
    watch: Watch | None = None              # the container's peak counter, between start and end
    kernel_peak: KernelPeak | None = None   # read at the end


class Registry:
    def __init__(self, reader, discovery: Discovery, clock: Clock, *, resolution_s: float,
                 maxage_s: float, retention_s: float):
        self.reader = reader
        self.discovery = discovery
        self.clock = clock
        self.resolution_s = resolution_s
        self.maxage_s = maxage_s
        self.retention_s = retention_s
        self.max_samples = int(maxage_s / resolution_s * 1.25) + 1
        self.containers: dict[str, Container] = {}
        self.bindings: dict[str, Binding] = {}
        #: Activation ids in binding order, and those bound to a container not known then: what
        #: housekeeping expires is found from their fronts, never by a scan of every binding.
        self._binding_order: deque[str] = deque()
        self._unplaced: deque[str] = deque()
        self.running: tuple[Container, ...] = ()
        #: Handles of containers gone or re-resolved, closed by the sampler between sweeps.
        self._retired: list[CgroupHandle] = []
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ notices

    def apply(self, notice: ContainerNotice | ActivationNotice, at_s: float | None = None) -> None:
        """``at_s``: when the change happened (epoch s), if the source knows better than "now"
        (Docker events carry the daemon's timestamp)."""
        if isinstance(notice, ActivationNotice):
            _BOUNDARY_HANDLERS[notice.boundary](self, notice)
        else:
            _LIFECYCLE_HANDLERS[notice.action](self, notice, at_s)

    def _entry(self, container: str, state: State) -> Container:
        entry = self.containers.get(container)
        if entry is None:
            entry = Container(container, state, SampleBuffer(self.maxage_s, self.max_samples),
                              resolving_since_s=self.clock.epoch_s())
            self.containers[container] = entry
        return entry

    def _set_state(self, entry: Container, state: State, at_s: float | None = None) -> None:
        now = self.clock.epoch_s() if at_s is None else at_s
        if state is State.RUNNING:
            if entry.intervals and entry.intervals[-1][1] is not None and entry.intervals[-1][1] >= now:
                entry.intervals[-1][1] = None  # resumed before the last stretch ended: one stretch
            elif not entry.intervals or entry.intervals[-1][1] is not None:
                entry.intervals.append([now, None])
        elif entry.intervals and entry.intervals[-1][1] is None:
            entry.intervals[-1][1] = max(now, entry.intervals[-1][0])
        entry.state = state
        if state is State.REMOVED:
            entry.removed_at_s = now
            self._release_files(entry)
        else:
            entry.removed_at_s = None
        self._refresh_running()

    def _release_files(self, entry: Container) -> None:
        handle = entry.release_files()
        if handle is not None:
            self._retired.append(handle)

    def close_retired(self) -> None:
        """Close the sampling handles released since the last call.

        Only the sampler's thread calls it, between its sweeps: a sweep reads the handles of the
        ``running`` tuple it started with, without the lock, so a handle closed by a notice's
        thread during the sweep could have its descriptor reused by another open (a new
        container's files) and be read as the wrong file.  Deferred to here, no read is in flight.
        """
        if not self._retired:  # the common case, without the lock
            return
        with self._lock:
            retired, self._retired = self._retired, []
        for handle in retired:
            handle.close()

    def _refresh_running(self) -> None:
        self.running = tuple(c for c in self.containers.values()
                             if c.state is State.RUNNING and c.handle is not None)

    def _resolve(self, entry: Container, hint: tuple[tuple[str, str], ...] | None) -> None:
        """Find and open the cgroup of ``entry``, without the lock; install it under the lock
        unless the entry changed meanwhile (removed, resolved by another notice, new hint)."""
        try:
            dirs = self.discovery.resolve(entry.id, hint)
            handle = self.reader.open(dirs)
        except (CgroupError, OSError) as exc:
            with self._lock:
                if entry.resolve_error != str(exc):
                    log.warning("container %s: %s; retrying for %.0f s", entry.id, exc, RESOLVE_GIVE_UP_S)
                entry.resolve_error = str(exc)
            return
        with self._lock:
            current = (self.containers.get(entry.id) is entry and entry.state is not State.REMOVED
                       and entry.handle is None and entry.hint == hint)
            if current:
                entry.dirs, entry.handle, entry.resolve_error = dirs, handle, None
                entry.peak = PeakCounter(dirs.memory, self.reader.version)
                # Its first sample now, not at the sampler's next sweep: the baseline of an
                # activation that starts as soon as the notifier has seen this notice handled
                # (a container re-announced after a restart, one listed at start-up).  Not yet in
                # ``running``, the buffer is not the sampler's: one writer still.
                self._append_sample(entry)
                self._refresh_running()
        if not current:
            handle.close()
            return
        log.info("container %s: sampling %s", entry.id,
                 dirs.memory if dirs.memory == dirs.cpu else f"{dirs.memory} and {dirs.cpu}")

    def on_run(self, notice: ContainerNotice, at_s: float | None = None) -> None:
        with self._lock:
            entry = self._entry(notice.container, State.RUNNING)
            if entry.state is State.RUNNING and entry.handle is not None:
                return  # announced twice: one container
            if entry.state is State.REMOVED or (notice.cgroup is not None and notice.cgroup != entry.hint):
                self._release_files(entry)
                entry.dirs = None
            if notice.cgroup is not None:
                entry.hint = notice.cgroup
            if entry.handle is None:
                entry.resolving_since_s = self.clock.epoch_s()
            entry.failed_reads = 0
            self._set_state(entry, State.RUNNING, at_s)
            unresolved, hint = entry.handle is None, entry.hint
        if unresolved:
            self._resolve(entry, hint)

    def on_pause(self, notice: ContainerNotice, at_s: float | None = None) -> None:
        with self._lock:
            entry = self._entry(notice.container, State.PAUSED)
            self._set_state(entry, State.PAUSED, at_s)
            first_seen_paused = entry.handle is None and not entry.reads
            hint = entry.hint
        if first_seen_paused:
            # e.g. listed paused at start-up: ready when it resumes, and sampled once when found
            # (its counters do not move while it is frozen: the last sample before its next
            # activation, as the sample before its pause would have been)
            self._resolve(entry, hint)

    def _append_sample(self, entry: Container) -> None:
        """One sample of ``entry`` outside the sampler's sweep; the caller holds the lock and
        ``entry`` is not in ``running`` (the sampler is its buffer's only other writer)."""
        handle = entry.handle
        if handle is not None:
            date_s = self.clock.epoch_s()
            memory, cpu, rss_mapped = handle.sample(True)
            entry.buffer.append(date_s, memory, cpu, rss_mapped)
            entry.reads += 1

    def on_resume(self, notice: ContainerNotice, at_s: float | None = None) -> None:
        self.on_run(notice, at_s)

    def on_rm(self, notice: ContainerNotice, at_s: float | None = None) -> None:
        with self._lock:
            entry = self.containers.get(notice.container)
            if entry is None:
                log.info("rm of unknown container %s ignored", notice.container)
                return
            if entry.state is not State.REMOVED:
                self._set_state(entry, State.REMOVED, at_s)

    def on_activation_start(self, notice: ActivationNotice) -> None:
        with self._lock:
            binding = self._binding(notice)
            binding.start_s = notice.date_s
            entry = self.containers.get(notice.container)
            if binding.watch is None and binding.kernel_peak is None and entry is not None and entry.peak is not None:
                late = self.clock.epoch_s() - notice.date_s > LATE_RESET_S
                if late:
                    log.warning("activation %s: start notice handled %.1f ms after its date: its kernel peak "
                                "is not reset", notice.activation, (self.clock.epoch_s() - notice.date_s) * 1000)
                binding.watch = entry.peak.begin(late)

    def on_activation_end(self, notice: ActivationNotice) -> None:
        with self._lock:
            binding = self._binding(notice)
            binding.end_s = notice.date_s
            if binding.kernel_peak is None:
                binding.kernel_peak = self._end_watch(binding, self.containers.get(notice.container))

    @staticmethod
    def _end_watch(binding: Binding, entry: Container | None) -> KernelPeak:
        """The kernel peak of an activation that ended (its watch, if any, closed)."""
        watch, binding.watch = binding.watch, None
        if watch is not None:
            return watch.counter.end(watch)
        return UNAVAILABLE if entry is None else entry.kernel_peak()

    def _binding(self, notice: ActivationNotice) -> Binding:
        binding = self.bindings.get(notice.activation)
        if binding is None:
            binding = Binding(notice.activation, (), bound_at_s=self.clock.epoch_s())
            self.bindings[notice.activation] = binding
            self._binding_order.append(notice.activation)
        if notice.container in binding.containers:
            return binding
        if binding.containers:
            log.warning("activation %s announced in containers %s and %s: its answer will be 'ambiguous'",
                        notice.activation, sorted(binding.containers), notice.container)
        entry = self.containers.get(notice.container)
        binding.containers = (entry.alone if entry is not None and not binding.containers
                              else binding.containers + (notice.container,))
        (self._unplaced if entry is None else entry.bound).append(notice.activation)
        return binding

    def vanished(self, entry: Container, reason: str) -> None:
        """The sampler found the cgroup gone without an ``rm``."""
        with self._lock:
            if entry.state is State.RUNNING:
                log.warning("container %s: %s; treated as removed", entry.id, reason)
                self._set_state(entry, State.REMOVED)

    def set_name(self, container: str, name: str) -> None:
        """Record Docker's name of a known container (for attribution)."""
        with self._lock:
            entry = self.containers.get(container)
            if entry is not None:
                entry.name = name

    # ------------------------------------------------------------------ queries

    def named_candidates(self) -> list[Candidate]:
        """Every container with a Docker name and its running stretches (for attribution)."""
        with self._lock:
            return [Candidate(e.id, e.name, tuple((a, b) for a, b in e.intervals))
                    for e in self.containers.values() if e.name is not None]

    def window(self, container: str, start_s: float, end_s: float) -> Samples:
        entry = self.containers.get(container)
        if entry is None:
            raise ProtocolError(f"unknown container {container!r}", ErrorCode.UNKNOWN_CONTAINER)
        return entry.buffer.window(start_s, end_s)

    def awaits_sample_after(self, container: str, date_s: float) -> bool:
        """Whether the container is being sampled and has no sample dated at or after ``date_s``
        yet (a container paused, removed or unknown takes no more)."""
        entry = self.containers.get(container)
        if entry is None or entry.state is not State.RUNNING:
            return False
        newest_s = entry.buffer.newest_date_s()
        return newest_s is None or newest_s < date_s

    def activation_binding(self, activation: str) -> Binding:
        with self._lock:
            binding = self.bindings.get(activation)
            if binding is None:
                raise ProtocolError(f"unknown activation {activation}", ErrorCode.UNKNOWN_ACTIVATION)
            if binding.kernel_peak is not None:
                kernel_peak = binding.kernel_peak
            elif binding.watch is not None:  # no end yet: the peak so far
                kernel_peak = binding.watch.counter.peek(binding.watch)
            else:
                kernel_peak = self._container_peak(binding.containers)
            return Binding(binding.activation, binding.containers, binding.start_s, binding.end_s,
                           kernel_peak=kernel_peak)

    def _container_peak(self, containers: tuple[str, ...]) -> KernelPeak:
        entry = self.containers.get(containers[0]) if len(containers) == 1 else None
        return UNAVAILABLE if entry is None else entry.kernel_peak()

    def activation(self, activation: str, end_hint_s: float | None = None, *,
                   binding: Binding | None = None) -> ActivationAnswer:
        """The samples of the container an activation ran in, from the last sample at or before
        its start to the first sample at or after its end (see docs/monitor.md).  Without an end
        notice (not received yet), the end is ``end_hint_s`` (the record's end) if given, else now.
        ``binding``: its :meth:`activation_binding`, when the caller took it already."""
        if binding is None:
            binding = self.activation_binding(activation)
        if len(binding.containers) > 1:
            raise ProtocolError(f"activation {activation} was announced in several containers: "
                                f"{', '.join(sorted(binding.containers))}", ErrorCode.AMBIGUOUS)
        (container,) = binding.containers
        entry = self.containers.get(container)
        if entry is None:
            raise ProtocolError(f"activation {activation} ran in container {container!r}, which the "
                                "monitor never saw run", ErrorCode.UNKNOWN_CONTAINER)
        end_s = binding.end_s
        if end_s is None:
            end_s = end_hint_s if end_hint_s is not None else self.clock.epoch_s()
        start_s = binding.start_s if binding.start_s is not None else end_s  # a binding has a start or an end
        samples = entry.buffer.window(start_s, end_s, bracket=True)
        return ActivationAnswer(activation, container, binding.start_s, binding.end_s, samples, binding.kernel_peak)

    # ------------------------------------------------------------------ housekeeping

    def housekeeping(self) -> None:
        """Expire removed containers and old bindings, evict old samples, retry discovery.

        Its cost follows what expires, not what is kept: at 5,000 activations/s the monitor holds
        millions of bindings (``maxage_s`` + ``retention_s``), too many to scan twice a second."""
        now = self.clock.epoch_s()
        retry: list[tuple[Container, tuple[tuple[str, str], ...] | None]] = []
        with self._lock:
            gone: list[Container] = []
            for entry in list(self.containers.values()):
                removed_at_s = entry.removed_at_s  # set with State.REMOVED
                if entry.state is State.REMOVED and removed_at_s is not None and now - removed_at_s > self.retention_s:
                    del self.containers[entry.id]
                    gone.append(entry)
                    continue
                entry.buffer.evict(now)
                while len(entry.intervals) > 1 and entry.intervals[0][1] < now - self.maxage_s:
                    del entry.intervals[0]  # its samples are gone too
                if entry.state is State.RUNNING and entry.handle is None:
                    if now - entry.resolving_since_s > RESOLVE_GIVE_UP_S:
                        log.warning("container %s: giving up, no cgroup (%s)", entry.id, entry.resolve_error)
                        self._set_state(entry, State.REMOVED)
                    else:
                        retry.append((entry, entry.hint))
            self._expire_bindings(now, gone)
            for entry in self.containers.values():
                while entry.bound and entry.bound[0] not in self.bindings:
                    entry.bound.popleft()
        for entry, hint in retry:
            self._resolve(entry, hint)

    def _expire_bindings(self, now: float, gone: list[Container]) -> None:
        """Bindings go with their container (once every container they name is gone, and at least
        ``retention_s`` after binding), or ``maxage_s`` + ``retention_s`` after binding."""
        recent = now - self.retention_s
        for entry in gone:
            for activation in entry.bound:
                binding = self.bindings.get(activation)
                if binding is not None and binding.bound_at_s < recent and self._all_gone(binding):
                    self._expire(binding)
        while self._unplaced:  # bound to a container unknown then: gone if it still is
            binding = self.bindings.get(self._unplaced[0])
            if binding is not None:
                if binding.bound_at_s >= recent:
                    break
                if self._all_gone(binding):
                    self._expire(binding)
            self._unplaced.popleft()
        horizon = now - self.maxage_s - self.retention_s
        while self._binding_order:
            binding = self.bindings.get(self._binding_order[0])
            if binding is not None:
                if binding.bound_at_s >= horizon:
                    break
                self._expire(binding)
            self._binding_order.popleft()

    def _all_gone(self, binding: Binding) -> bool:
        return all(c not in self.containers for c in binding.containers)

    def _expire(self, binding: Binding) -> None:
        if binding.watch is not None:  # never ended
            binding.watch.counter.end(binding.watch)
        del self.bindings[binding.activation]

    def close(self) -> None:
        with self._lock:
            for entry in self.containers.values():
                self._release_files(entry)
            for binding in self.bindings.values():
                if binding.watch is not None:
                    binding.watch.close()
            self.running = ()
            retired, self._retired = self._retired, []
        for handle in retired:  # the sampler has stopped
            handle.close()


_LIFECYCLE_HANDLERS = {
    Lifecycle.RUN: Registry.on_run,
    Lifecycle.PAUSE: Registry.on_pause,
    Lifecycle.RESUME: Registry.on_resume,
    Lifecycle.RM: Registry.on_rm,
}
_BOUNDARY_HANDLERS = {
    Boundary.START: Registry.on_activation_start,
    Boundary.END: Registry.on_activation_end,
}
