"""One shard's membership of a sharded experiment: join, start together, heartbeat, aggregate (docs/scale-out.md).

* :meth:`Membership.join` measures this host's clock against the database server's (and refuses
  to go on beyond ``cluster:max_clock_offset_ms``), then inserts the shard's row.  The shard whose
  join completes the set agrees the start instant: the server's clock + ``cluster:start_delay_s``.
* :meth:`Membership.wait_for_start` waits for that instant to be agreed and converts it to this
  host's monotonic clock; a shard that failed to join, or a join that takes longer than
  ``cluster:join_timeout_s``, fails every waiting shard with the reason.
* A thread heartbeats every ``cluster:heartbeat_interval_s`` with the progress counts; a shard
  whose heartbeat is older than ``cluster:dead_after_s`` is ``dead``.
* :meth:`Membership.finish` stores the shard's own summary, then waits until no shard is live; the
  first to see that claims the aggregate: the unfinished runs of dead or failed shards become
  ``lost`` with the reason, and the experiment's summary is computed from every shard's runs
  (:mod:`loader.cluster.aggregate`) and stored.  Every shard returns that aggregate.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faasload.clock import Clock
from loader.cluster import clock_offset
from loader.cluster.aggregate import aggregate
from loader.cluster.shard import Shard, shard_of
from loader.config import ClusterConfig
from loader.storage import shards
from loader.storage.database import DatabaseConfiguration
from loader.storage.shards import ShardConflict, ShardRow

log = logging.getLogger(__name__)

WAIT_POLL_S = 0.2
WAIT_LOG_EVERY_S = 10.0
#: Longest wait for the aggregate that another shard claimed (it reads every run once).
AGGREGATE_WAIT_S = 300.0

#: ``progress()`` → (issued, completed, epoch s when the scheduler started or None).
Progress = Callable[[], tuple[int, int, float | None]]


class ClusterError(RuntimeError):
    """This shard cannot take part in the experiment (the message says why)."""


@dataclass(frozen=True)
class ClusterSettings:
    shard: Shard
    host: str
    start_delay_s: float
    join_timeout_s: float
    heartbeat_interval_s: float
    dead_after_s: float
    max_clock_offset_us: float

    @classmethod
    def of_config(cls, cluster: ClusterConfig) -> ClusterSettings:
        return cls(Shard(cluster.shard, cluster.shards), cluster.host or socket.gethostname(),
                   cluster.start_delay_s, cluster.join_timeout_s, cluster.heartbeat_interval_s,
                   cluster.dead_after_s, cluster.max_clock_offset_ms * 1000)


class Membership:
    def __init__(self, database: DatabaseConfiguration, experiment_id: int, settings: ClusterSettings,
                 offset: clock_offset.ClockOffset, clock: Clock, conn):
        self.database = database
        self.experiment_id = experiment_id
        self.settings = settings
        self.offset = offset
        self.clock = clock
        self.start_at_us: int | None = None
        self._conn = conn
        self._progress: Progress | None = None
        self._started_recorded = False
        self._ended = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def shard(self) -> Shard:
        return self.settings.shard

    # ------------------------------------------------------------------ joining

    @classmethod
    def join(cls, database: DatabaseConfiguration, experiment_id: int, settings: ClusterSettings, *,
             planned: int, clock: Clock) -> Membership:
        """Measure the clock offset, insert this shard, start heartbeating."""
        conn = database.connect()
        try:
            offset = clock_offset.measure(lambda: shards.server_epoch_us(conn), clock.epoch_s)
            common: dict[str, Any] = dict(
                shard=settings.shard.index, shards=settings.shard.count, host=settings.host, pid=os.getpid(),
                planned=planned, clock_offset_us=offset.offset_us, clock_rtt_us=offset.rtt_us,
                start_delay_s=settings.start_delay_s)
            try:
                if offset.exceeds(settings.max_clock_offset_us):
                    ahead = "ahead of" if offset.offset_us < 0 else "behind"
                    reason = (f"this host's clock is {abs(offset.offset_us) / 1000:.1f} ms {ahead} the database "
                              f"server's (± {offset.rtt_us / 2000:.1f} ms), beyond cluster:max_clock_offset_ms "
                              f"({settings.max_clock_offset_us / 1000:g} ms): synchronise the clocks (chrony, NTP)")
                    shards.join(conn, experiment_id, state="failed", reason=reason, **common)
                    raise ClusterError(reason)
                start_at_us = shards.join(conn, experiment_id, **common)
            except ShardConflict as exc:
                raise ClusterError(f"shard {settings.shard} cannot join the experiment: {exc}") from None
        except BaseException:
            conn.close()
            raise
        log.info("shard %s (%s) joined experiment %d; clock offset to the database server %+.3f ms (± %.3f ms)%s",
                 settings.shard, settings.host, experiment_id, offset.offset_us / 1000, offset.rtt_us / 2000,
                 "; every shard has joined" if start_at_us is not None else "")
        membership = cls(database, experiment_id, settings, offset, clock, conn)
        membership._thread = threading.Thread(target=membership._heartbeat_loop, name="shard-heartbeat", daemon=True)
        membership._thread.start()
        return membership

    def wait_for_start(self) -> float:
        """The agreed start instant on this host's monotonic clock (it may already be past)."""
        s = self.settings
        deadline_s = time.monotonic() + s.join_timeout_s
        next_log_s = time.monotonic() + WAIT_LOG_EVERY_S
        while True:
            rows = shards.read_shards(self._conn, self.experiment_id, s.dead_after_s)
            for row in rows:
                if row.shard != self.shard.index and row.state not in ("joined", "running"):
                    reason = (f"shard {row.shard}/{row.shards} on {row.host} is {row.state} before the start"
                              + (f": {row.reason}" if row.reason else ""))
                    self.end("failed", reason)
                    raise ClusterError(reason)
            start_at_us = next((r.start_at_us for r in rows if r.start_at_us is not None), None)
            if start_at_us is not None:
                self.start_at_us = start_at_us
                start_s = self.clock.monotonic_s() + (self.offset.to_local_epoch_s(start_at_us) - self.clock.epoch_s())
                log.info("shard %s starts in %.3f s (at %.6f on the database server's clock)", self.shard,
                         start_s - self.clock.monotonic_s(), start_at_us / 1e6)
                return start_s
            now_s = time.monotonic()
            missing = sorted(set(range(1, self.shard.count + 1)) - {r.shard for r in rows})
            if now_s > deadline_s:
                reason = (f"only {len(rows)} of {self.shard.count} shards joined within cluster:join_timeout_s "
                          f"({s.join_timeout_s:g} s); missing: {', '.join(map(str, missing))}")
                self.end("failed", reason)
                raise ClusterError(reason)
            if now_s >= next_log_s:
                log.info("waiting for shards %s to join", ", ".join(f"{m}/{self.shard.count}" for m in missing))
                next_log_s = now_s + WAIT_LOG_EVERY_S
            time.sleep(WAIT_POLL_S)

    # ------------------------------------------------------------------ running

    def track(self, progress: Progress) -> None:
        """Where the heartbeat reads the shard's progress."""
        self._progress = progress

    def _heartbeat_loop(self) -> None:
        conn = None
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                if conn is None:
                    conn = self.database.connect()
                self._beat(conn)
            except Exception as exc:  # the database may be down for a while: keep trying  # noqa: BLE001
                log.warning("shard heartbeat failed (%s); other shards count this one dead after %g s without it",
                            exc, self.settings.dead_after_s)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _beat(self, conn) -> None:
        issued, completed, started_epoch_s = self._progress() if self._progress is not None else (0, 0, None)
        if started_epoch_s is not None and not self._started_recorded:
            shards.started(conn, self.experiment_id, self.shard.index, round(started_epoch_s * 1_000_000))
            self._started_recorded = True
        shards.heartbeat(conn, self.experiment_id, self.shard.index, issued=issued, completed=completed)

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30.0)
            self._thread = None

    # ------------------------------------------------------------------ ending

    def end(self, state: str, reason: str | None = None, summary: dict | None = None) -> str:
        """Store how this shard ended (once); the state stored (``dead`` if another shard reaped it)."""
        self._stop_heartbeat()
        if self._ended:
            return state
        self._ended = True
        issued = completed = None
        if self._progress is not None:
            issued, completed, started_epoch_s = self._progress()
            if started_epoch_s is not None and not self._started_recorded:
                shards.started(self._conn, self.experiment_id, self.shard.index, round(started_epoch_s * 1_000_000))
                self._started_recorded = True
        stored = shards.end(self._conn, self.experiment_id, self.shard.index, state=state, reason=reason,
                            summary=summary, issued=issued, completed=completed)
        if stored == "dead" and state != "dead":
            log.error("shard %s was declared dead by another shard (no heartbeat for %g s): its runs that were "
                      "still sent then are recorded lost", self.shard, self.settings.dead_after_s)
        return stored

    def abandon(self, exc: BaseException) -> None:
        """The run failed or was interrupted before :meth:`finish`: say so, and aggregate if this was the last."""
        if self._ended:
            return
        state = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            self.end(state, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            self._try_aggregate(late_threshold_us=None)
        except Exception:  # the original error matters more  # noqa: BLE001
            log.exception("could not record that shard %s %s", self.shard, state)

    def finish(self, summary: dict, late_threshold_us: int) -> dict:
        """Store this shard's summary; wait until no shard is live; return the experiment's aggregate."""
        self.end("failed" if summary.get("failure") else "stopped" if summary.get("stopped") else "finished",
                 reason=summary.get("failure"), summary=summary)
        waiting_since_s = time.monotonic()
        next_log_s = waiting_since_s
        while True:
            aggregated, rows = self._try_aggregate(late_threshold_us)
            if aggregated is not None:
                return aggregated
            live = [r for r in rows if r.state in shards.LIVE_STATES]
            if time.monotonic() >= next_log_s:
                log.info("waiting for %s to end (or to miss heartbeats for %g s) before the experiment's aggregate",
                         ", ".join(f"shard {r.shard}/{r.shards} on {r.host} ({r.state}, {r.issued} issued, "
                                   f"heartbeat {r.heartbeat_age_s:.1f} s ago)" for r in live),
                         self.settings.dead_after_s)
                next_log_s = time.monotonic() + WAIT_LOG_EVERY_S
            time.sleep(min(1.0, self.settings.heartbeat_interval_s))

    def _try_aggregate(self, late_threshold_us: int | None) -> tuple[dict | None, list[ShardRow]]:
        """(None, rows) while a shard is live; else the aggregate (computed here, or read back)."""
        outcome, rows = shards.claim_aggregate(self._conn, self.experiment_id, self.settings.dead_after_s)
        if outcome == "wait":
            return None, rows
        if outcome == "done":
            return self._read_aggregate(rows), rows
        reap(self._conn, self.experiment_id, rows)
        summary = aggregate(self._conn, self.experiment_id,
                            shards.read_shards(self._conn, self.experiment_id, self.settings.dead_after_s),
                            late_threshold_us if late_threshold_us is not None else _threshold_of(rows))
        shards.store_aggregate(self._conn, self.experiment_id, summary, self.start_at_us)
        log.info("shard %s wrote the experiment's aggregate (every shard has ended)", self.shard)
        return summary, rows

    def _read_aggregate(self, rows: list[ShardRow]) -> dict:
        """The aggregate another shard claimed: stored once it has computed it (or computed here when
        that shard died while computing it)."""
        deadline_s = time.monotonic() + max(AGGREGATE_WAIT_S, 2 * self.settings.dead_after_s)
        while time.monotonic() < deadline_s:
            summary = shards.read_summary(self._conn, self.experiment_id)
            if summary is not None and "shards" in summary:
                return summary
            time.sleep(WAIT_POLL_S)
        log.warning("the shard that claimed the experiment's aggregate did not store it: computed here (not stored)")
        return aggregate(self._conn, self.experiment_id,
                         shards.read_shards(self._conn, self.experiment_id, self.settings.dead_after_s),
                         _threshold_of(rows))

    def close(self) -> None:
        self._stop_heartbeat()
        self._conn.close()


def _threshold_of(rows: list[ShardRow]) -> int:
    for row in rows:
        if row.summary and row.summary.get("late_threshold_ms") is not None:
            return round(row.summary["late_threshold_ms"] * 1000)
    return 10_000


def reap(conn, experiment_id: int, rows: list[ShardRow]) -> int:
    """Runs still ``sent`` of shards that did not finish become ``lost``, with the shard's fate as reason."""
    ended = {r.shard: r for r in rows if r.state in ("dead", "failed")}
    if not ended:
        return 0
    count = rows[0].shards
    by_shard: dict[int, list[str]] = {}
    for user in shards.unfinished_users(conn, experiment_id):
        by_shard.setdefault(shard_of(user, count), []).append(user)
    reaped = 0
    for number, users in sorted(by_shard.items()):
        row = ended.get(number)
        if row is None:
            continue
        fate = ("stopped heartbeating (dead)" if row.state == "dead" else "failed") + (f": {row.reason}" if row.reason else "")
        reaped += shards.mark_lost(conn, experiment_id, users,
                                   f"shard {row.shard}/{row.shards} on {row.host} {fate}; nobody followed this "
                                   f"activation to its end")
    if reaped:
        log.warning("%d runs of shards that did not finish are recorded lost", reaped)
    return reaped
