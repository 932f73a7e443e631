"""Independent, reproducible random streams: one per (seed, purpose, function).

Each stream is :class:`random.Random` seeded with SHA-256 of the seed, the purpose
(``arrivals``, ``duration``, ``parameters``...) and the function's identity, never
Python's salted ``hash()``.  Streams are read only through ``random()`` (53-bit
floats) and ``getrandbits``, whose outputs CPython keeps stable, so the same seed gives
the same workload; a function's draws do not depend on the other functions (sampling
or selecting functions does not change the traces of the ones kept).
"""

from __future__ import annotations

import hashlib
import random

from .records import SourceId


def stream(seed: int, purpose: str, source: SourceId | str) -> random.Random:
    """The random stream of ``purpose`` for one function (or any other named thing)."""
    name = source if isinstance(source, str) else f"{source.owner}\0{source.app}\0{source.function}"
    digest = hashlib.sha256(f"faasload-workloads\0{seed}\0{purpose}\0{name}".encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))

