"""Per-invocation uniform draws of one function: i.i.d. or stratified (``--draws``).

The conversion turns a function's duration (and, with ``--memory draw``, memory)
percentiles into one value per invocation by inverse-CDF sampling of a unit ``u`` in
[0, 1).  With ``iid`` draws each ``u`` is an independent uniform: a function with few
invocations then gets a handful of values whose median can be far from the function's
(heavy-tailed percentiles).  With ``stratified`` draws (1-D Latin hypercube) the ``n``
invocations of a function get ``u_i = (π(i) + U_i) / n``, ``π`` a seeded permutation of
``0..n-1`` and ``U_i`` seeded uniforms: exactly one ``u`` falls in each stratum
``[k/n, (k+1)/n)``, so the k-th smallest requested value lies between the function's
percentiles ``100 k/n`` and ``100 (k+1)/n``, for any ``n``, while the order stays random.

``π`` is a keyed Feistel network on the smallest even power of two covering ``n``, with
cycle walking back into ``0..n-1`` (format-preserving encryption's construction): a
bijection computed per index, so a function of a hundred million invocations needs no
table (constant memory), and the keys come from the function's seeded stream.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

_ROUNDS = 4
_MASK64 = (1 << 64) - 1


class Draws(str, enum.Enum):
    """How a function's per-invocation units are drawn (``--draws``)."""

    IID = "iid"
    STRATIFIED = "stratified"

    def __str__(self) -> str:
        return self.value


def _mix(value: int) -> int:
    """SplitMix64's finalizer: a 64-bit integer hash."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


class Permutation:
    """A seeded bijection of ``0..count-1`` (keys drawn from ``rng`` with ``getrandbits``)."""

    def __init__(self, rng: random.Random, count: int):
        if count < 1:
            raise ValueError(f"a permutation needs at least one element, got {count}")
        self.count = count
        half = max(1, ((count - 1).bit_length() + 1) // 2)
        self._half, self._mask = half, (1 << half) - 1
        self._keys = tuple(rng.getrandbits(64) for _ in range(_ROUNDS))

    def _encrypt(self, value: int) -> int:
        half, mask = self._half, self._mask
        left, right = value >> half, value & mask
        for key in self._keys:
            left, right = right, left ^ (_mix(right ^ key) & mask)
        return (left << half) | right

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self.count:
            raise IndexError(index)
        value = self._encrypt(index)
        while value >= self.count:  # the domain is < 4 x count: under 4 steps on average
            value = self._encrypt(value)
        return value


def units(rng: random.Random, mode: Draws, count: int | None) -> Callable[[], float]:
    """The function's next unit in [0, 1) at each call; at most ``count`` calls when stratified.

    ``count`` is the number of units the function will ask for (``None``: unknown, only for
    ``iid``).  Stratified draws take the permutation's keys from ``rng`` first, then one
    uniform per call.
    """
    if mode is Draws.IID:
        return rng.random
    if count is None:
        raise ValueError("stratified draws need the number of invocations")
    order = Permutation(rng, count) if count else None
    position = 0

    def unit() -> float:
        nonlocal position
        if order is None or position >= count:
            raise ValueError(f"more than the {count} stratified draws counted")
        value = (order[position] + rng.random()) / count
        position += 1
        return min(value, 1.0 - 2.0 ** -53)  # (n - 1 + U) / n can round up to 1.0

    return unit
