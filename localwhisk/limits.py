"""Per-namespace invocation throttles, as OpenWhisk's entitlement (docs/openwhisk-contract.md,
Limits and throttling).

* per minute: a fixed calendar-minute window (``epoch ms // 60000``), counted before the
  check so that rejected requests count too (``RateThrottler``);
* concurrent: rejected when the namespace's activations in flight are >= the allowed
  number (``ActivationThrottler``, classic entitlement text).
"""

from __future__ import annotations

import threading

from .errors import too_many_concurrent, too_many_requests


class RateThrottler:
    """Invocations per namespace per calendar minute."""

    def __init__(self):
        self._lock = threading.Lock()
        self._minute = -1
        self._counts: dict[str, int] = {}

    def check(self, namespace: str, allowed: int, now_ms: int) -> str | None:
        """Count one request; the 429 text when it is over ``allowed``, else None."""
        minute = now_ms // 60000
        with self._lock:
            if minute != self._minute:
                self._minute = minute
                self._counts.clear()
            count = self._counts.get(namespace, 0) + 1
            self._counts[namespace] = count
        return too_many_requests(count, allowed) if count > allowed else None


class ConcurrencyThrottler:
    """Activations in flight per namespace; ``acquire`` admits or refuses one."""

    def __init__(self):
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def acquire(self, namespace: str, allowed: int) -> str | None:
        """Admit one activation (None) or the 429 text."""
        with self._lock:
            count = self._in_flight.get(namespace, 0)
            if count >= allowed:
                return too_many_concurrent(count, allowed)
            self._in_flight[namespace] = count + 1
        return None

    def release(self, namespace: str) -> None:
        with self._lock:
            count = self._in_flight.get(namespace, 0) - 1
            if count > 0:
                self._in_flight[namespace] = count
            else:
                self._in_flight.pop(namespace, None)

    def in_flight(self, namespace: str) -> int:
        with self._lock:
            return self._in_flight.get(namespace, 0)
