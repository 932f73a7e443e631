"""Which invocations of a function will need a new container: its predicted cold starts.

A platform runs an invocation in a warm container of its function when one is free, else it
starts a new one (a cold start, whose recorded duration holds the initialisation).  Replaying a
function's invocations in order, with each lasting its own duration (Azure 2021) or the
function's median, and every container kept warm for the whole replay, an invocation is cold
when all the containers started so far are busy at its start.  The first invocation always is;
so is every one that raises the function's concurrency to a new high.

The stratified and quantile draws (:mod:`.draws`) leave these invocations out of the strata, so
that the invocations that will run warm, the ones compared with the trace, are the stratified
sample.  It is a prediction: a platform that evicts idle containers, or shares its container
pool between functions, starts more of them; the first invocation is cold on any platform.
Memory: a heap of the end times of the function's running invocations (its concurrency).
"""

from __future__ import annotations

import heapq


class ColdStarts:
    """Feed a function's invocations in start order: :meth:`cold` says whether each needs a new container."""

    def __init__(self) -> None:
        self.containers = 0
        self._busy_until_us: list[int] = []  # end times of the invocations running

    def cold(self, start_us: int, duration_us: int) -> bool:
        busy = self._busy_until_us
        while busy and busy[0] <= start_us:
            heapq.heappop(busy)
        new = len(busy) >= self.containers
        if new:
            self.containers += 1
        heapq.heappush(busy, start_us + max(0, duration_us))
        return new
