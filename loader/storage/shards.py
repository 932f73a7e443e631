"""The ``shards`` table: the loaders of one experiment, its start instant, heartbeats, the aggregate's claim.

Every statement of the scale-out coordination (docs/scale-out.md) lives here; the logic that
uses them is :mod:`loader.cluster.membership`.  Concurrent shards serialise on the
experiment's row (``SELECT ... FOR UPDATE``): the shard whose join completes the set sets the
start instant, and exactly one shard claims the aggregate (it sets ``experiments.ended_at``).

A shard's *effective* state is its stored state, except that a ``joined`` or ``running`` shard
whose heartbeat is older than ``dead_after_s`` (on the database server's clock) is ``dead``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from loader.storage.database import StoreError
from loader.storage.rows import ExperimentState

#: States of a shard that still works (or should): it may write runs.
LIVE_STATES = ("joined", "running")


class ShardConflict(StoreError):
    """This shard cannot join the experiment (taken, wrong count, a non-sharded experiment)."""


@dataclass(frozen=True, slots=True)
class ShardRow:
    """One shard as read back, with its effective state."""

    shard: int
    shards: int
    host: str
    pid: int | None
    state: str                  # effective: "dead" when live with a stale heartbeat
    stored_state: str
    reason: str | None
    planned: int | None
    issued: int
    completed: int
    clock_offset_us: int | None
    clock_rtt_us: int | None
    start_at_us: int | None
    started_epoch_us: int | None
    heartbeat_age_s: float
    summary: dict | None

    @property
    def start_lag_us(self) -> int | None:
        """When this shard's scheduler started, on the database server's clock, minus the agreed start."""
        if self.started_epoch_us is None or self.start_at_us is None or self.clock_offset_us is None:
            return None
        return self.started_epoch_us + self.clock_offset_us - self.start_at_us


_COLUMNS = """shard, shards, host, pid,
    CASE WHEN state IN ('joined', 'running') AND heartbeat_at < clock_timestamp() - %s * interval '1 second'
         THEN 'dead' ELSE state END,
    state, reason, planned, issued, completed, clock_offset_us, clock_rtt_us, start_at_us, started_epoch_us,
    extract(epoch FROM clock_timestamp() - heartbeat_at)::float8, summary"""


def _row(values: tuple) -> ShardRow:
    fields = list(values)
    if isinstance(fields[-1], str):
        fields[-1] = json.loads(fields[-1])
    return ShardRow(*fields)


def server_epoch_us(conn) -> int:
    """The database server's clock now, µs since the epoch (``clock_timestamp()``, not the transaction's)."""
    with conn.cursor() as cur:
        cur.execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint")
        value = cur.fetchone()[0]
    conn.commit()
    return value


def join(conn, experiment_id: int, *, shard: int, shards: int, host: str, pid: int, planned: int,
         clock_offset_us: int, clock_rtt_us: int, start_delay_s: float, state: str = "joined",
         reason: str | None = None) -> int | None:
    """Insert this shard; when it completes the set, agree on the start (server clock + delay).

    Returns the agreed start (server epoch µs) when set by this join, else None.  Raises
    :class:`ShardConflict` when the shard is taken, the count differs, or the experiment already
    holds runs of a loader that was not a shard.
    """
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM experiments WHERE experiment_id = %s FOR UPDATE", (experiment_id,))
        cur.execute("SELECT shard, shards, host FROM shards WHERE experiment_id = %s", (experiment_id,))
        existing = cur.fetchall()
        if not existing:
            cur.execute("SELECT count(*) FROM runs WHERE experiment_id = %s", (experiment_id,))
            runs = cur.fetchone()[0]
            if runs:
                raise ShardConflict(f"the experiment already holds {runs} runs of a loader that was not a shard")
        for other, count, other_host in existing:
            if count != shards:
                raise ShardConflict(f"its shards are {count} (shard {other} on {other_host} said so), not {shards}")
            if other == shard:
                raise ShardConflict(f"shard {shard}/{shards} already joined it (from {other_host}); a shard runs "
                                    f"once per experiment: choose a new experiment:name to run again")
        cur.execute(
            """INSERT INTO shards (experiment_id, shard, shards, host, pid, state, reason, planned, clock_offset_us,
                                   clock_rtt_us) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (experiment_id, shard, shards, host, pid, state, reason, planned, clock_offset_us, clock_rtt_us))
        if state != "joined" or len(existing) + 1 < shards:
            return None
        cur.execute(
            """UPDATE shards SET start_at_us = (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
                                               + %s::bigint
               WHERE experiment_id = %s RETURNING start_at_us""",
            (round(start_delay_s * 1_000_000), experiment_id))
        return cur.fetchone()[0]


def read_shards(conn, experiment_id: int, dead_after_s: float) -> list[ShardRow]:
    """Every shard of the experiment, by shard number, with its effective state."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM shards WHERE experiment_id = %s ORDER BY shard",
                    (dead_after_s, experiment_id))
        rows = [_row(r) for r in cur.fetchall()]
    conn.commit()
    return rows


def heartbeat(conn, experiment_id: int, shard: int, *, issued: int, completed: int) -> None:
    """The shard is alive, with its progress (a stored state other than joined/running is kept)."""
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE shards SET heartbeat_at = clock_timestamp(), issued = %s, completed = %s "
                    "WHERE experiment_id = %s AND shard = %s", (issued, completed, experiment_id, shard))


def started(conn, experiment_id: int, shard: int, started_epoch_us: int) -> None:
    """The shard's scheduler started at ``started_epoch_us`` (this host's clock)."""
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE shards SET state = 'running', started_epoch_us = %s, heartbeat_at = clock_timestamp() "
                    "WHERE experiment_id = %s AND shard = %s AND state = 'joined'",
                    (started_epoch_us, experiment_id, shard))


def end(conn, experiment_id: int, shard: int, *, state: str, reason: str | None = None,
        summary: dict | None = None, issued: int | None = None, completed: int | None = None) -> str:
    """The shard ended in ``state``; returns the state stored (``dead`` stays: another shard reaped it)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE shards SET state = CASE WHEN state = 'dead' THEN state ELSE %s END,
                                 reason = COALESCE(%s, reason), summary = COALESCE(%s, summary),
                                 issued = COALESCE(%s, issued), completed = COALESCE(%s, completed),
                                 ended_at = clock_timestamp(), heartbeat_at = clock_timestamp()
               WHERE experiment_id = %s AND shard = %s RETURNING state""",
            (state, reason, json.dumps(summary) if summary is not None else None, issued, completed,
             experiment_id, shard))
        row = cur.fetchone()
    return row[0] if row else state


def claim_aggregate(conn, experiment_id: int, dead_after_s: float) -> tuple[str, list[ShardRow]]:
    """Try to become the shard that writes the experiment's aggregate.

    ``("claimed", shards)``: no shard is live any more and none claimed before: this caller
    aggregates (``experiments.ended_at`` is set, ``state`` ``finished`` when every shard finished, else
    ``stopped``; shards found dead are stored ``dead``).
    ``("done", shards)``: another shard claimed it.  ``("wait", shards)``: some shard is live.
    """
    with conn, conn.cursor() as cur:
        cur.execute("SELECT ended_at IS NOT NULL FROM experiments WHERE experiment_id = %s FOR UPDATE",
                    (experiment_id,))
        already = cur.fetchone()[0]
        cur.execute(f"SELECT {_COLUMNS} FROM shards WHERE experiment_id = %s ORDER BY shard",
                    (dead_after_s, experiment_id))
        rows = [_row(r) for r in cur.fetchall()]
        if already:
            return "done", rows
        if any(r.state in LIVE_STATES for r in rows):
            return "wait", rows
        dead = [r.shard for r in rows if r.state == "dead" and r.stored_state != "dead"]
        if dead:
            cur.execute("UPDATE shards SET state = 'dead', reason = COALESCE(reason, %s) "
                        "WHERE experiment_id = %s AND shard = ANY(%s)",
                        (f"no heartbeat for more than {dead_after_s:g} s", experiment_id, dead))
        finished = all(r.state == "finished" for r in rows)  # else a shard was stopped, failed or died
        state = ExperimentState.FINISHED if finished else ExperimentState.STOPPED
        cur.execute("UPDATE experiments SET ended_at = now(), state = %s WHERE experiment_id = %s",
                    (state.value, experiment_id))
    return "claimed", rows


def unfinished_users(conn, experiment_id: int) -> list[str]:
    """The users that have runs still ``sent`` (not terminal) in the experiment."""
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT user_name FROM runs WHERE experiment_id = %s AND status = 'sent' "
                    "ORDER BY user_name", (experiment_id,))
        users = [r[0] for r in cur.fetchall()]
    conn.commit()
    return users


def mark_lost(conn, experiment_id: int, users: list[str], reason: str) -> int:
    """Runs of ``users`` still ``sent`` become ``lost`` with ``reason``; how many."""
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE runs SET status = 'lost', status_reason = %s "
                    "WHERE experiment_id = %s AND status = 'sent' AND user_name = ANY(%s)",
                    (reason, experiment_id, users))
        return cur.rowcount


#: Per run, what :class:`loader.storage.summary.RunStats` needs (no record: duration NULL).
_FACTS = """SELECT r.user_name, r.action_name, r.status, r.lateness_us, r.duration_ms, r.wait_time_ms, r.cold_start,
       r.start_ms IS NOT NULL, r.resources_status,
       (SELECT max(s.memory_bytes) FROM resources s WHERE s.run_id = r.run_id)
FROM runs r WHERE r.experiment_id = %s ORDER BY r.run_id"""


def iter_run_facts(conn, experiment_id: int, batch: int = 10_000) -> Iterator[tuple]:
    """Every run of the experiment as (user, action, status, lateness_us, duration_ms, wait_time_ms,
    cold_start, has_record, resources_status, peak_memory_bytes), streamed (server-side cursor)."""
    with conn:
        with conn.cursor(name="run_facts") as cur:
            cur.itersize = batch
            cur.execute(_FACTS, (experiment_id,))
            yield from cur


def store_aggregate(conn, experiment_id: int, summary: dict, start_epoch_us: int | None) -> None:
    """The experiment's summary (every shard's runs) and its agreed start."""
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE experiments SET summary = %s, start_epoch_us = COALESCE(%s, start_epoch_us) "
                    "WHERE experiment_id = %s", (json.dumps(summary), start_epoch_us, experiment_id))


def read_summary(conn, experiment_id: int) -> dict | None:
    with conn.cursor() as cur:
        cur.execute("SELECT summary FROM experiments WHERE experiment_id = %s", (experiment_id,))
        row = cur.fetchone()
    conn.commit()
    if row is None or row[0] is None:
        return None
    return json.loads(row[0]) if isinstance(row[0], str) else row[0]


def find_experiment(conn, name: str) -> int | None:
    with conn.cursor() as cur:
        cur.execute("SELECT experiment_id FROM experiments WHERE name = %s", (name,))
        row = cur.fetchone()
    conn.commit()
    return row[0] if row else None
