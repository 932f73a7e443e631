"""The one backoff policy of every retry loop: exponential, capped, with optional full jitter.

``delay_s(n)`` is the wait before retry ``n`` (1 for the first retry):
``min(cap_s, first_s * factor ** (n - 1))``, or a uniform draw in ``[0, that]`` with full
jitter (which spreads the retries of many clients apart instead of synchronising them,
as in AWS's "Exponential Backoff And Jitter").  ``gives_up(n)`` says whether retry ``n``
is beyond ``max_retries`` (None: never gives up).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    first_s: float
    cap_s: float
    factor: float = 2.0
    full_jitter: bool = False
    max_retries: int | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.first_s < 0 or self.cap_s < self.first_s or self.factor < 1:
            raise ValueError(f"invalid backoff: first {self.first_s} s, cap {self.cap_s} s, factor {self.factor}")

    def delay_s(self, retry: int) -> float:
        """The wait before retry number ``retry`` (>= 1)."""
        bound_s = min(self.cap_s, self.first_s * self.factor ** max(0, retry - 1))
        return self.rng.uniform(0.0, bound_s) if self.full_jitter else bound_s

    def gives_up(self, retry: int) -> bool:
        return self.max_retries is not None and retry > self.max_retries

    @classmethod
    def fixed(cls, interval_s: float, max_retries: int | None = None) -> Backoff:
        """The same wait before every retry."""
        return cls(interval_s, interval_s, factor=1.0, max_retries=max_retries)
