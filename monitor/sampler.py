"""One sampler for every container: absolute deadlines every ``resolution_s``.

``tick()`` samples every running container once and advances the deadline; ``run()`` repeats
``tick()`` then ``clock.sleep_until(next_due_s)`` until stopped, in its own thread with a fine
timer slack.  When a tick comes later than the next deadline, the deadlines in between are
skipped (never bunched up), counted in :attr:`Sampler.missed_deadlines` and logged at most every
``MISS_LOG_PERIOD_S``.  Paused and removed containers are not in ``registry.running``, so they are
not sampled.
"""

from __future__ import annotations

import logging
import math
import threading

from faasload.clock import Clock, set_fine_timer_slack

from .cgroups import NOT_MEASURED
from .registry import Registry

log = logging.getLogger(__name__)

#: A container whose every read failed this many times in a row is treated as removed.
VANISHED_AFTER_FAILED_READS = 100
MISS_LOG_PERIOD_S = 10.0
#: With a resolution up to this, the sampler sleeps without waiting on its stop event.
STOP_CHECK_S = 0.1


class Sampler:
    def __init__(self, registry: Registry, clock: Clock, resolution_s: float, stat_every: int = 1):
        self.registry = registry
        self.clock = clock
        self.resolution_s = resolution_s
        self.stat_every = stat_every
        self.next_due_s: float | None = None
        self.ticks = 0
        self.samples_taken = 0
        self.missed_deadlines = 0
        self._missed_logged = 0
        self._last_miss_log_s = -math.inf

    def tick(self) -> float:
        """Sample every running container once; return the next deadline (monotonic seconds)."""
        now_s = self.clock.monotonic_s()
        if self.next_due_s is None:
            self.next_due_s = now_s
        late_s = now_s - self.next_due_s
        if late_s >= self.resolution_s:
            skipped = int(late_s // self.resolution_s)
            self.missed_deadlines += skipped
            self.next_due_s += skipped * self.resolution_s
        self.registry.close_retired()  # between sweeps: no read of a released handle in flight
        epoch_s, stat_every, taken = self.clock.epoch_s, self.stat_every, 0
        for entry in self.registry.running:
            handle = entry.handle
            if handle is None:  # removed while we iterate
                continue
            reads = entry.reads
            entry.reads = reads + 1
            date_s = epoch_s()
            # memory.stat on each container's 1st, (N+1)th... sample: spread over the ticks
            memory, cpu, rss_mapped = handle.sample(reads % stat_every == 0)
            entry.buffer.append(date_s, memory, cpu, rss_mapped)
            taken += 1
            if memory == NOT_MEASURED and cpu == NOT_MEASURED and rss_mapped == NOT_MEASURED:
                entry.failed_reads += 1
                if entry.failed_reads == VANISHED_AFTER_FAILED_READS:
                    self.registry.vanished(entry, f"{entry.failed_reads} reads of its cgroup failed in a row")
            elif entry.failed_reads:
                entry.failed_reads = 0
        self.samples_taken += taken
        self.ticks += 1
        self.next_due_s += self.resolution_s
        self._log_misses(now_s)
        return self.next_due_s

    def _log_misses(self, now_s: float) -> None:
        if self.missed_deadlines > self._missed_logged and now_s - self._last_miss_log_s >= MISS_LOG_PERIOD_S:
            log.warning("sampler missed %d deadline(s) of %.1f ms (%d in total since start)",
                        self.missed_deadlines - self._missed_logged, self.resolution_s * 1000,
                        self.missed_deadlines)
            self._missed_logged = self.missed_deadlines
            self._last_miss_log_s = now_s

    def run(self, stop: threading.Event) -> None:
        """Tick on deadlines until ``stop`` is set (call in the sampler's own thread)."""
        if not set_fine_timer_slack():
            log.info("could not set a fine timer slack: sampling may be a little late")
        # Between close deadlines a plain sleep: waiting on the event costs twice the CPU per
        # tick (a lock made and timed out each time); stop is then seen at the next tick.
        wake = stop if self.resolution_s > STOP_CHECK_S else None
        while not stop.is_set():
            due_s = self.tick()
            self.clock.sleep_until(due_s, wake)
