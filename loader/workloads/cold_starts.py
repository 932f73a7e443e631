"""Which invocations of a function will need a new container: its predicted cold starts.

A platform runs an invocation in a warm container of its function when one is free, else it
starts a new one (a cold start, whose recorded duration holds the initialisation).  Replaying a
function's invocations in order, with each lasting its own duration (Azure 2021) or the
function's median, and every container kept warm for the whole replay, an invocation is cold
when all the containers started so far are busy at its start.  The first invocation always is;
so is every one that raises the function's concurrency to a new high.

The stratified and quantile draws (:mod:`.draws`) leave these invocations out of the strata, so
that the invocations that will run warm, the ones compared with the trace, are the stratified
sample.

A container that has been idle for longer than the platform's keep-alive is gone (OpenWhisk
removes a warm container 10 minutes after its last use, localwhisk after
``containers:keepalive_s``): a function called once an hour starts cold every time.  An
invocation takes the idle container freed last, so that the others age out as they would on a
platform that keeps its busiest containers warm.  It is still a prediction: a platform that
evicts containers for memory, or shares its pool between functions, starts more of them; the
first invocation is cold on any platform.  Memory: a heap of the end times of the function's
running invocations (its concurrency) and the end times of its idle containers.
"""

from __future__ import annotations

import collections
import heapq


class ColdStarts:
    """Feed a function's invocations in start order: :meth:`cold` says whether each needs a new container.

    ``keepalive_us``: how long an idle container stays warm (None: for ever).  ``containers``
    counts the containers started (the cold starts).
    """

    def __init__(self, keepalive_us: int | None = None) -> None:
        self.keepalive_us = keepalive_us
        self.containers = 0
        self._busy_until_us: list[int] = []  # a heap: end times of the invocations running
        self._idle_since_us: collections.deque[int] = collections.deque()  # idle containers, oldest first

    def cold(self, start_us: int, duration_us: int) -> bool:
        busy, idle = self._busy_until_us, self._idle_since_us
        while busy and busy[0] <= start_us:   # ends come out in order, each after the idle ones before
            idle.append(heapq.heappop(busy))
        if self.keepalive_us is not None:
            while idle and idle[0] + self.keepalive_us < start_us:
                idle.popleft()
        new = not idle
        if new:
            self.containers += 1
        else:
            idle.pop()   # the container freed last
        heapq.heappush(busy, start_us + max(0, duration_us))
        return new
