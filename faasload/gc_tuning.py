"""The garbage collector set for a daemon's run: start-up's objects frozen, collections rarer.

CPython collects the youngest generation every 700 net allocations of tracked objects and the
whole heap every 100 young collections (when the long-lived objects grew by a quarter); each
collection holds the GIL.  A loader at thousands of invocations per second keeps tens of
thousands of live objects (pending activations, queued rows, buffered answers), so its full
collections grow with the backlog and stop every thread at once.  Measured on the completion
path (``bench/completion_pipeline.py --rates 5000 --duration-s 10 --monitor on``, 2026-12-01,
2 cores): with the defaults the pipeline's process ran 21 full collections of up to 187 ms,
3.0 s of a 20 s run, and completed 2,900/s; with :data:`THRESHOLDS` 37 young and one middle
collection, and 3,770/s.

Reference cycles are still collected, only later: the young generation at 20,000 objects is a few
megabytes at most.  ``gc.freeze()`` moves what start-up allocated (modules, configuration, keys)
to a generation no collection scans: it is never garbage.
"""

from __future__ import annotations

import gc

#: (young allocations, young collections per middle one, middle per full) instead of (700, 10, 10).
THRESHOLDS = (20_000, 20, 20)


def tune() -> tuple[int, int, int]:
    """Freeze the objects alive now out of every collection, and collect less often; the
    previous thresholds returned (for :func:`restore`; a process that runs only this, e.g. a
    sender process, never restores)."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return previous


def restore(previous: tuple[int, int, int]) -> None:
    """The thresholds back, and the frozen objects back in the collected generations."""
    gc.set_threshold(*previous)
    gc.unfreeze()
