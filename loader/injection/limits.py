"""``--validate``: the load each user's traces will put on the platform, against that user's limits.

OpenWhisk throttles per namespace (docs/openwhisk-contract.md, *Limits and throttling*): a
calendar minute holds at most ``invocationsPerMinute`` invocations and at most
``concurrentInvocations`` may be in flight; the rest are answered 429 and recorded
``throttled``.  From the traces, before anything is sent:

* the **peak per minute** is the most invocations of the user planned in any 60 s window
  (any calendar minute is such a window, so a calendar minute holds at most this many);
* the **peak concurrency** is the most invocations of the user overlapping when each lasts
  its ``duration_ms`` parameter when it has one (the workload importers' calibrated action
  takes it), else its action's timeout (from the platform's action record): an upper bound.

The limits are the platform's answer to ``GET /api/v1/namespaces/_/limits`` with the user's
key (the effective values: the namespace's own, else the system's).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from loader.injection.traces import FileTraceSource, TraceScan
from loader.platform.client import FetchStatus, OpenWhiskClient
from loader.platform.keys import UserKey

WINDOW_US = 60_000_000
#: Duration assumed when an action's record gives no timeout: OpenWhisk's default (60 s).
DEFAULT_TIMEOUT_MS = 60_000
LOOKUP_WORKERS = 8


@dataclass(frozen=True)
class UserLoad:
    user: str
    invocations: int
    peak_per_minute: int
    peak_concurrency: int
    timeouts_used: int          # invocations that lasted their action's timeout (no duration_ms)


@dataclass(frozen=True)
class UserLimits:
    per_minute: int | None
    concurrent: int | None
    problem: str | None = None  # why they are unknown


def _duration_us(parameters: tuple[tuple[str, str], ...]) -> int | None:
    for name, value in parameters:
        if name == "duration_ms":
            try:
                return max(0, round(float(value) * 1000))
            except ValueError:
                return None
    return None


def user_loads(scans: tuple[TraceScan, ...], timeouts_ms: dict[tuple[str, str], int]) -> list[UserLoad]:
    """Each user's peak per minute and peak concurrency, from every invocation of its traces."""
    starts: dict[str, list[int]] = {}
    ends: dict[str, list[int]] = {}
    by_timeout: dict[str, int] = {}
    for scan in scans:
        source = FileTraceSource(scan.path, incont="", outcont="")
        timeout_us = timeouts_ms.get((source.user, source.action), DEFAULT_TIMEOUT_MS) * 1000
        user_starts, user_ends = starts.setdefault(source.user, []), ends.setdefault(source.user, [])
        while (invocation := source.next_invocation()) is not None:
            duration_us = _duration_us(invocation.parameters)
            if duration_us is None:
                duration_us = timeout_us
                by_timeout[source.user] = by_timeout.get(source.user, 0) + 1
            user_starts.append(invocation.planned_offset_us)
            user_ends.append(invocation.planned_offset_us + duration_us)
    loads = []
    for user in sorted(starts):
        begin = np.sort(np.asarray(starts[user], dtype=np.int64))
        finish = np.sort(np.asarray(ends[user], dtype=np.int64))
        if begin.size == 0:
            loads.append(UserLoad(user, 0, 0, 0, 0))
            continue
        in_window = np.searchsorted(begin, begin + WINDOW_US, side="left") - np.arange(begin.size)
        running = np.arange(1, begin.size + 1) - np.searchsorted(finish, begin, side="right")
        loads.append(UserLoad(user, int(begin.size), int(in_window.max()), int(running.max()),
                              by_timeout.get(user, 0)))
    return loads


def _limits(outcome) -> UserLimits:
    if outcome.status is not FetchStatus.FOUND:
        return UserLimits(None, None, f"GET .../limits answered {outcome.http_status or ''} {outcome.reason}".strip())
    record = outcome.record or {}
    def number(key: str) -> int | None:
        value = record.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return UserLimits(number("invocationsPerMinute"), number("concurrentInvocations"))


def _timeout_ms(outcome) -> int | None:
    if outcome.status is not FetchStatus.FOUND:
        return None
    timeout = ((outcome.record or {}).get("limits") or {}).get("timeout")
    return timeout if isinstance(timeout, int) and timeout > 0 else None


def over_limits(client: OpenWhiskClient, keys: dict[str, UserKey], scans: tuple[TraceScan, ...]) -> list[str]:
    """One line per user whose traces exceed a limit of the platform (or whose limits are unknown)."""
    pairs = sorted({(s.name.user, s.name.action) for s in scans if s.name.user in keys})
    users = sorted({user for user, _ in pairs})
    with ThreadPoolExecutor(LOOKUP_WORKERS, thread_name_prefix="limits") as executor:
        timeouts = dict(zip(pairs, executor.map(lambda p: _timeout_ms(client.get_action(keys[p[0]], p[1])), pairs)))
        limits = dict(zip(users, executor.map(lambda u: _limits(client.get_limits(keys[u])), users)))
    known_timeouts = {pair: t for pair, t in timeouts.items() if t is not None}
    lines = []
    for load in user_loads(tuple(s for s in scans if s.name.user in keys), known_timeouts):
        limit = limits[load.user]
        if limit.problem:
            lines.append(f"user {load.user!r}: limits unknown ({limit.problem}); its traces plan up to "
                         f"{load.peak_per_minute} invocations in 60 s")
            continue
        if limit.per_minute is not None and load.peak_per_minute > limit.per_minute:
            lines.append(f"user {load.user!r}: its traces plan up to {load.peak_per_minute} invocations in 60 s, "
                         f"over its limit of {limit.per_minute} per minute: expect 429s (throttled)")
        if limit.concurrent is not None and load.peak_concurrency > limit.concurrent:
            basis = ("each lasting its action's timeout, an upper bound" if load.timeouts_used == load.invocations
                     else "each lasting its duration_ms parameter" if load.timeouts_used == 0
                     else "each lasting its duration_ms parameter or else its action's timeout")
            lines.append(f"user {load.user!r}: up to {load.peak_concurrency} of its invocations may run at once "
                         f"({basis}), over its limit of {limit.concurrent} concurrent")
    return lines
