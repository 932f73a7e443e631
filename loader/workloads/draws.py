"""Per-invocation uniform draws of one function: i.i.d., stratified or quantiles (``--draws``).

The conversion turns a function's duration (and, with ``--memory draw``, memory)
percentiles into one value per invocation by inverse-CDF sampling of a unit ``u`` in
[0, 1).  With ``iid`` draws each ``u`` is an independent uniform: a function with few
invocations then gets a handful of values whose median can be far from the function's
(heavy-tailed percentiles).

With ``stratified`` draws (1-D Latin hypercube) the invocations predicted to start a container
(:mod:`.cold_starts`; the first always does) get independent uniforms and the ``m`` others
get ``u_i = (π(i) + U_i) / m``, ``π`` a seeded permutation of ``0..m-1`` and ``U_i`` seeded
uniforms: exactly one ``u`` falls in each stratum ``[k/m, (k+1)/m)``, so the k-th smallest
value of the warm invocations lies between the function's percentiles ``100 k/m`` and
``100 (k+1)/m``, for any ``n``, while the order stays random.  Cold starts are left out of
the strata because their recorded duration holds the initialisation and is left out of warm
statistics: the warm runs are then still a stratified sample.  Every invocation's value still
follows the function's distribution.

With ``quantiles`` the same strata are replaced by their midpoints, ``u_i = (π(i) + ½) / m``
(a cold start: ½), except that for even ``m`` the two middle strata both take ½: the warm
invocations request exactly the function's quantiles ``(k + ½)/m`` in a seeded order, and their
median is the function's median for any ``m`` (with the two middle midpoints, it would be the
mean of the quantiles ``½ ∓ 1/(2m)``: for two invocations, the mean of the p25 and p75, which
was 2,003 ms for a function of median 1,405 ms in a replay of the Azure 2019 sample); every value is
known in advance; the tails beyond the outermost midpoints are never drawn (a function of one
or two warm invocations always runs its median).

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
    QUANTILES = "quantiles"

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


def units(rng: random.Random, mode: Draws, strata: int | None) -> Callable[[bool], float]:
    """``unit(outside)``: the function's next unit in [0, 1), from the strata unless ``outside``
    (a predicted cold start); at most ``strata`` calls from the strata unless i.i.d.

    ``strata`` is the number of units the function will ask from the strata (``None``:
    unknown, only for ``iid``, which ignores ``outside``).  Stratified draws take the
    permutation's keys from ``rng`` first, then one uniform per call; quantiles only the keys.
    """
    if mode is Draws.IID:
        return lambda outside: rng.random()
    if strata is None:
        raise ValueError(f"{mode} draws need the number of invocations")
    order = Permutation(rng, strata) if strata else None
    jitter: Callable[[], float] = rng.random if mode is Draws.STRATIFIED else (lambda: 0.5)
    # quantiles of an even count: the two middle strata at the median, so the median is exact
    middle = {strata // 2 - 1, strata // 2} if mode is Draws.QUANTILES and strata % 2 == 0 else set()
    position = 0

    def unit(outside: bool) -> float:
        nonlocal position
        if outside:
            return jitter()
        if order is None or position >= strata:
            raise ValueError(f"more than the {strata} {mode} draws counted")
        stratum = order[position]
        value = 0.5 if stratum in middle else (stratum + jitter()) / strata
        position += 1
        return min(value, 1.0 - 2.0 ** -53)  # (m - 1 + U) / m can round up to 1.0

    return unit
