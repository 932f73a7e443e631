"""``--validate``: the load each user's traces will put on the platform, against that user's limits.

OpenWhisk throttles per namespace (docs/openwhisk-contract.md, *Limits and throttling*): a
calendar minute holds at most ``invocationsPerMinute`` invocations and at most
``concurrentInvocations`` may be in flight; the rest are answered 429 and recorded
``throttled``.  From the traces, before anything is sent:

* the **peak per minute** is the most invocations of the user planned in any 60 s window
  (any calendar minute is such a window, so a calendar minute holds at most this many);
* the **peak concurrency** is the most invocations of the user overlapping when each lasts
  its ``duration_ms`` parameter when it has one (the workload importers' calibrated action
  takes it), else the p99 of the durations (plus wait) recorded for its (user, action) in the
  dataset, by any earlier experiment, else its action's timeout (from the platform's action
  record): an upper bound.

The limits are the platform's answer to ``GET /api/v1/namespaces/_/limits`` with the user's
key (the effective values: the namespace's own, else the system's).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from loader.config import DatabaseSection
from loader.injection.traces import FileTraceSource, TraceScan
from loader.platform.client import FetchStatus, OpenWhiskClient
from loader.platform.keys import UserKey
from loader.storage import queries
from loader.storage.database import embedded_datadir, is_configured, open_database

log = logging.getLogger(__name__)

WINDOW_US = 60_000_000
#: Duration assumed when an action's record gives no timeout: OpenWhisk's default (60 s).
DEFAULT_TIMEOUT_MS = 60_000
LOOKUP_WORKERS = 8
#: Where each invocation's duration came from, in the order they are tried.
SOURCES = ("duration_ms parameter", "recorded p99 duration", "action's timeout")


@dataclass(frozen=True)
class UserLoad:
    user: str
    invocations: int
    peak_per_minute: int
    peak_concurrency: int
    sources: tuple[str, ...]    # where the durations came from (of SOURCES)

    @property
    def basis(self) -> str:
        shown = {"duration_ms parameter": "its duration_ms parameter",
                 "recorded p99 duration": "the p99 duration recorded for its action",
                 "action's timeout": "its action's timeout, an upper bound"}
        return "each lasting " + ", or ".join(shown[s] for s in self.sources)


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


def user_loads(scans: tuple[TraceScan, ...], timeouts_ms: dict[tuple[str, str], int],
               recorded_ms: dict[tuple[str, str], int] | None = None) -> list[UserLoad]:
    """Each user's peak per minute and peak concurrency, from every invocation of its traces."""
    recorded_ms = recorded_ms or {}
    starts: dict[str, list[int]] = {}
    ends: dict[str, list[int]] = {}
    used: dict[str, set[str]] = {}
    for scan in scans:
        source = FileTraceSource(scan.path, incont="", outcont="")
        pair = (source.user, source.action)
        if pair in recorded_ms:
            fallback_us, fallback = recorded_ms[pair] * 1000, SOURCES[1]
        else:
            fallback_us, fallback = timeouts_ms.get(pair, DEFAULT_TIMEOUT_MS) * 1000, SOURCES[2]
        user_starts, user_ends = starts.setdefault(source.user, []), ends.setdefault(source.user, [])
        user_used = used.setdefault(source.user, set())
        while (invocation := source.next_invocation()) is not None:
            duration_us = _duration_us(invocation.parameters)
            if duration_us is None:
                duration_us = fallback_us
                user_used.add(fallback)
            else:
                user_used.add(SOURCES[0])
            user_starts.append(invocation.planned_offset_us)
            user_ends.append(invocation.planned_offset_us + duration_us)
    loads = []
    for user in sorted(starts):
        begin = np.sort(np.asarray(starts[user], dtype=np.int64))
        finish = np.sort(np.asarray(ends[user], dtype=np.int64))
        sources = tuple(s for s in SOURCES if s in used[user])
        if begin.size == 0:
            loads.append(UserLoad(user, 0, 0, 0, sources))
            continue
        in_window = np.searchsorted(begin, begin + WINDOW_US, side="left") - np.arange(begin.size)
        running = np.arange(1, begin.size + 1) - np.searchsorted(finish, begin, side="right")
        loads.append(UserLoad(user, int(begin.size), int(in_window.max()), int(running.max()), sources))
    return loads


def recorded_durations_ms(section: DatabaseSection) -> dict[tuple[str, str], int]:
    """The p99 duration (plus wait) recorded per (user, action) in the dataset; empty when there
    is no dataset yet or it cannot be read now (the estimate then uses the actions' timeouts)."""
    if not is_configured(section) and not (embedded_datadir(section) / "PG_VERSION").is_file():
        return {}
    try:
        opened = open_database(section)
        try:
            conn = opened.config.connect()
            try:
                rows = queries.recorded_durations(conn)
            finally:
                conn.close()
        finally:
            opened.close()
    except Exception as exc:  # an estimate only: never a reason to fail the check  # noqa: BLE001
        log.info("no recorded durations for the concurrency estimate (%s): using the actions' timeouts", exc)
        return {}
    return {(user, action): int(p99_ms) for user, action, p99_ms, _ in rows.rows if p99_ms is not None}


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


def over_limits(client: OpenWhiskClient, keys: dict[str, UserKey], scans: tuple[TraceScan, ...],
                recorded_ms: dict[tuple[str, str], int] | None = None) -> list[str]:
    """One line per user whose traces exceed a limit of the platform (or whose limits are unknown)."""
    pairs = sorted({(s.name.user, s.name.action) for s in scans if s.name.user in keys})
    users = sorted({user for user, _ in pairs})
    with ThreadPoolExecutor(LOOKUP_WORKERS, thread_name_prefix="limits") as executor:
        timeouts = dict(zip(pairs, executor.map(lambda p: _timeout_ms(client.get_action(keys[p[0]], p[1])), pairs)))
        limits = dict(zip(users, executor.map(lambda u: _limits(client.get_limits(keys[u])), users)))
    known_timeouts = {pair: t for pair, t in timeouts.items() if t is not None}
    lines = []
    for load in user_loads(tuple(s for s in scans if s.name.user in keys), known_timeouts, recorded_ms):
        limit = limits[load.user]
        if limit.problem:
            lines.append(f"user {load.user!r}: limits unknown ({limit.problem}); its traces plan up to "
                         f"{load.peak_per_minute} invocations in 60 s")
            continue
        if limit.per_minute is not None and load.peak_per_minute > limit.per_minute:
            lines.append(f"user {load.user!r}: its traces plan up to {load.peak_per_minute} invocations in 60 s, "
                         f"over its limit of {limit.per_minute} per minute: expect 429s (throttled)")
        if limit.concurrent is not None and load.peak_concurrency > limit.concurrent:
            lines.append(f"user {load.user!r}: up to {load.peak_concurrency} of its invocations may run at once "
                         f"({load.basis}), over its limit of {limit.concurrent} concurrent")
    return lines
