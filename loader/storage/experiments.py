"""The dataset's experiments and functions tables: one-shot reads and writes outside the run writer.

Every SQL statement of the loader lives in :mod:`loader.storage`; the modes call these
functions with an open connection (:func:`open_store`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from loader.storage import schema
from loader.storage.database import DatabaseConfiguration, DatabaseError, StoreError, StoreUnavailable
from loader.storage.rows import ExperimentRow, ExperimentState, FunctionRow


def open_store(config: DatabaseConfiguration) -> psycopg2.extensions.connection:
    """Connect and bring the schema up to date."""
    conn = config.connect()
    schema.migrate(conn)
    return conn


def has_dataset(conn) -> bool:
    """Whether the database holds FaaSLoad's tables at all (read only: nothing is created)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('experiments') IS NOT NULL")
        found = cur.fetchone()[0]
    conn.commit()
    return found


def create_experiment(conn, *, name: str, mode: str, description: str = "", seed: int | None = None,
                      config: dict | None = None) -> int | None:
    """Create experiment ``name`` (state ``running``); None, with nothing written, when the name is taken."""
    with conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO experiments (name, mode, description, seed, config, state)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING experiment_id""",
            (name, mode, description, seed, json.dumps(config) if config is not None else None,
             ExperimentState.RUNNING.value))
        row = cur.fetchone()
    return row[0] if row else None


def ensure_experiment(conn, *, name: str, mode: str, description: str = "", start_epoch_us: int | None = None,
                      seed: int | None = None, config: dict | None = None, reopen: bool = False) -> int:
    """The id of experiment ``name``, created if new (``running``); with ``reopen``, an existing one is
    ``running`` again (a resumed generation, by the loader holding its :class:`ExperimentLease`)."""
    update = "ended_at = NULL, state = EXCLUDED.state" if reopen else "name = EXCLUDED.name"
    with conn, conn.cursor() as cur:
        cur.execute(
            f"""INSERT INTO experiments (name, mode, description, start_epoch_us, seed, config, state)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (name) DO UPDATE SET {update} WHERE experiments.mode = EXCLUDED.mode
                RETURNING experiment_id""",
            (name, mode, description, start_epoch_us, seed, json.dumps(config) if config is not None else None,
             ExperimentState.RUNNING.value))
        row = cur.fetchone()
    if row is None:
        stored = find_experiment(conn, name)
        raise StoreError(f"experiment {name!r} exists with mode {stored.mode if stored else '?'!r}, not {mode!r}")
    return row[0]


_EXPERIMENT_COLUMNS = """e.experiment_id, e.name, e.mode, e.state,
    (SELECT count(*) FROM runs r WHERE r.experiment_id = e.experiment_id), e.config, e.summary, e.start_epoch_us,
    (extract(epoch FROM e.started_at) * 1000000)::bigint"""


def _experiment_row(row: tuple) -> ExperimentRow:
    experiment_id, name, mode, state, runs, config, summary, start_epoch_us, started_at_epoch_us = row
    return ExperimentRow(experiment_id, name, mode, ExperimentState(state), runs, config, summary, start_epoch_us,
                         started_at_epoch_us)


def find_experiment(conn, name: str) -> ExperimentRow | None:
    """Experiment ``name`` as stored (read only), or None."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments e WHERE e.name = %s", (name,))
        row = cur.fetchone()
    conn.commit()
    return _experiment_row(row) if row else None


def running_experiments(conn) -> list[ExperimentRow]:
    """Every experiment stored as ``running`` (its loader alive or not: see :class:`ExperimentLease`)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments e WHERE e.state = %s ORDER BY e.experiment_id",
                    (ExperimentState.RUNNING.value,))
        rows = cur.fetchall()
    conn.commit()
    return [_experiment_row(row) for row in rows]


def count_runs(conn, experiment_id: int) -> int:
    """How many runs rows experiment ``experiment_id`` holds."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE experiment_id = %s", (experiment_id,))
        count = cur.fetchone()[0]
    conn.commit()
    return count


def end_experiment(conn, experiment_id: int, summary: dict, start_epoch_us: int | None = None,
                   state: ExperimentState = ExperimentState.FINISHED) -> None:
    """Store the summary (and the start instant, when known), the final state, and mark the experiment ended."""
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE experiments SET ended_at = now(), summary = %s, state = %s, "
                    "start_epoch_us = COALESCE(%s, start_epoch_us) WHERE experiment_id = %s",
                    (json.dumps(summary), state.value, start_epoch_us, experiment_id))


def finish_experiment(database: DatabaseConfiguration, experiment_id: int, summary: dict,
                      start_epoch_us: int | None, state: ExperimentState = ExperimentState.FINISHED) -> None:
    """:func:`end_experiment` on a fresh connection; :class:`StoreUnavailable` when the server cannot be used."""
    try:
        conn = database.connect()
        try:
            end_experiment(conn, experiment_id, summary, start_epoch_us, state)
        finally:
            conn.close()
    except (DatabaseError, psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        raise StoreUnavailable(str(exc).strip()) from exc


# --------------------------------------------------------------------------- liveness

#: The first key of the advisory locks that say "a loader runs this experiment" (the second is a
#: hash of its name, so that the lock can be taken before the row exists).
LEASE_LOCK_SPACE = 726354


class ExperimentLease:
    """An advisory lock on an experiment's name, held on its own connection by each loader that runs it
    (shared: the shards of one experiment hold it together), from before its row is created or
    reopened; a recovery takes it ``exclusive``.

    PostgreSQL releases it when that connection ends, the loader's process with it: an experiment
    stored ``running`` whose lease is free has lost its loaders (:func:`lease_is_free`).
    """

    def __init__(self, database: DatabaseConfiguration, name: str, *, exclusive: bool = False):
        self.name = name
        self._mode = "" if exclusive else "_shared"
        self._conn = database.connect()
        self._conn.autocommit = True
        with self._conn.cursor() as cur:
            cur.execute(f"SELECT pg_try_advisory_lock{self._mode}(%s, hashtext(%s))", (LEASE_LOCK_SPACE, name))
            row = cur.fetchone()
        if row is None or not row[0]:
            self._conn.close()
            held = "is run by another loader" if exclusive else "is being recovered by another loader"
            raise ExperimentBusy(f"experiment {name!r} {held} (it holds its lease)")

    def mark_started(self, experiment_id: int, start_epoch_us: int) -> None:
        """Store the experiment's common start as soon as it is known (what a recovery counts from)."""
        with self._conn.cursor() as cur:
            cur.execute("UPDATE experiments SET start_epoch_us = %s WHERE experiment_id = %s",
                        (start_epoch_us, experiment_id))

    def release(self) -> None:
        """Unlock (the server would only notice the closed connection a moment later), then disconnect."""
        try:
            with self._conn.cursor() as cur:
                cur.execute(f"SELECT pg_advisory_unlock{self._mode}(%s, hashtext(%s))", (LEASE_LOCK_SPACE, self.name))
        except psycopg2.Error:
            pass  # the connection broke: the server has released the lock with it
        finally:
            self._conn.close()


class ExperimentBusy(StoreError):
    """Another loader holds the experiment's lease."""


def lease_is_free(conn, name: str) -> bool:
    """Whether no loader holds the lease of experiment ``name`` (checked without keeping it)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LEASE_LOCK_SPACE, name))
        row = cur.fetchone()
        free = bool(row and row[0])
        if free:
            cur.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LEASE_LOCK_SPACE, name))
    conn.commit()
    return free


# --------------------------------------------------------------------------- functions

FUNCTION_COLUMNS = ("name", "package", "runtime", "image", "code_path", "main", "memory_mb", "timeout_ms",
                    "log_size_mb", "concurrency", "input_kind", "parameter_specs", "inputs", "manifest_path")


def _column_value(row: FunctionRow, column: str) -> Any:
    if column == "parameter_specs":
        return json.dumps(list(row.parameter_specs))
    if column == "inputs":
        return json.dumps(dict(row.inputs))
    return getattr(row, column)


def upsert_functions(conn, rows: list[FunctionRow]) -> int:
    """Insert or update functions by name; return how many rows were written."""
    values = [tuple(_column_value(r, c) for c in FUNCTION_COLUMNS) for r in rows]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in FUNCTION_COLUMNS if c != "name")
    with conn, conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur, f"INSERT INTO functions ({', '.join(FUNCTION_COLUMNS)}) VALUES %s "
                 f"ON CONFLICT (name) DO UPDATE SET {updates}, registered_at = now()", values)
    return len(values)


def fetch_functions(conn) -> list[FunctionRow]:
    """Every row of ``functions``, ordered by name."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(FUNCTION_COLUMNS)} FROM functions ORDER BY name")
        rows = cur.fetchall()
    conn.commit()
    result = []
    for row in rows:
        values = dict(zip(FUNCTION_COLUMNS, row))
        specs = values["parameter_specs"]
        values["parameter_specs"] = tuple(json.loads(specs) if isinstance(specs, str) else (specs or ()))
        inputs = values["inputs"]
        values["inputs"] = tuple(sorted((json.loads(inputs) if isinstance(inputs, str) else (inputs or {})).items()))
        result.append(FunctionRow(**values))
    return result


# --------------------------------------------------------------------------- a generation's resume


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What the database holds against a generation checkpoint's positions."""

    #: trace name -> confirmed runs below its checkpoint position.
    recorded: dict[str, int]
    #: False when some trace's count differs from its position: then nothing was changed.
    consistent: bool
    #: Unconfirmed rows deleted (to be run again).
    deleted: int
    #: (trace name, seq) of runs recorded at or beyond their trace's position (kept, skipped by the resume).
    beyond: list[tuple[str, int]]


def reconcile_generation(conn, experiment_id: int, positions: dict[str, int], confirmed: list[str],
                         unconfirmed: list[str]) -> Reconciliation:
    """In one transaction: check the confirmed runs below each position, then drop unconfirmed rows."""
    names, pos = list(positions), list(positions.values())
    with conn, conn.cursor() as cur:
        cur.execute(
            """SELECT p.name, count(r.seq) FROM unnest(%s::text[], %s::int[]) AS p(name, pos)
               LEFT JOIN runs r ON r.trace_name = p.name AND r.experiment_id = %s AND r.seq < p.pos
                                   AND r.status = ANY(%s)
               GROUP BY p.name""", (names, pos, experiment_id, confirmed))
        recorded = {name: count for name, count in cur.fetchall()}
        if any(recorded.get(name, 0) != position for name, position in positions.items()):
            return Reconciliation(recorded, False, 0, [])
        cur.execute("DELETE FROM runs WHERE experiment_id = %s AND status = ANY(%s)", (experiment_id, unconfirmed))
        deleted = cur.rowcount
        cur.execute(
            """SELECT r.trace_name, r.seq FROM runs r JOIN unnest(%s::text[], %s::int[]) AS p(name, pos)
               ON r.trace_name = p.name WHERE r.experiment_id = %s AND r.seq >= p.pos""",
            (names, pos, experiment_id))
        beyond = [(name, seq) for name, seq in cur.fetchall()]
    return Reconciliation(recorded, True, deleted, beyond)
