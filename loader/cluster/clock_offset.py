"""This host's clock against the database server's, as NTP measures it (docs/scale-out.md, Clocks).

One probe reads the local clock, the server's clock, the local clock again: the server read
happened within that round trip, so ``offset = server - (before + after) / 2`` is off by at most
half the round trip.  Of several probes the one with the shortest round trip is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PROBES = 8


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """``offset_us``: server clock − this host's clock; the true offset is within ± ``rtt_us`` / 2."""

    offset_us: int
    rtt_us: int

    def to_local_epoch_s(self, server_epoch_us: int) -> float:
        """A server instant on this host's clock."""
        return (server_epoch_us - self.offset_us) / 1_000_000

    def exceeds(self, limit_us: float) -> bool:
        """Whether the clocks surely differ by more than ``limit_us`` (beyond the measurement's error)."""
        return abs(self.offset_us) - self.rtt_us / 2 > limit_us


def measure(server_epoch_us: Callable[[], int], local_epoch_s: Callable[[], float],
            probes: int = PROBES) -> ClockOffset:
    """The offset of the probe with the shortest round trip."""
    best: ClockOffset | None = None
    for _ in range(probes):
        before_s = local_epoch_s()
        server_us = server_epoch_us()
        after_s = local_epoch_s()
        rtt_us = round((after_s - before_s) * 1_000_000)
        offset_us = round(server_us - (before_s + after_s) / 2 * 1_000_000)
        if best is None or rtt_us < best.rtt_us:
            best = ClockOffset(offset_us, rtt_us)
    if best is None:
        raise ValueError("at least one probe is needed")
    return best
