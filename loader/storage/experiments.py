"""The dataset's experiments and functions tables: one-shot reads and writes outside the run writer.

Every SQL statement of the loader lives in :mod:`loader.storage`; the modes call these
functions with an open connection (:func:`open_store`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from loader.storage import schema
from loader.storage.database import DatabaseConfiguration, DatabaseError, StoreError, StoreUnavailable
from loader.storage.rows import FunctionRow


def open_store(config: DatabaseConfiguration) -> psycopg2.extensions.connection:
    """Connect and bring the schema up to date."""
    conn = config.connect()
    schema.migrate(conn)
    return conn


def ensure_experiment(conn, *, name: str, mode: str, description: str = "", start_epoch_us: int | None = None,
                      seed: int | None = None, config: dict | None = None) -> int:
    """The id of experiment ``name``, created if new (a resumed generation reuses its experiment)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO experiments (name, mode, description, start_epoch_us, seed, config)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (name) DO UPDATE SET ended_at = NULL
               RETURNING experiment_id, mode""",
            (name, mode, description, start_epoch_us, seed, json.dumps(config) if config is not None else None))
        experiment_id, stored_mode = cur.fetchone()
    if stored_mode != mode:
        raise StoreError(f"experiment {name!r} exists with mode {stored_mode!r}, not {mode!r}")
    return experiment_id


def count_runs(conn, experiment_id: int) -> int:
    """How many runs rows experiment ``experiment_id`` holds."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE experiment_id = %s", (experiment_id,))
        count = cur.fetchone()[0]
    conn.commit()
    return count


def end_experiment(conn, experiment_id: int, summary: dict, start_epoch_us: int | None = None) -> None:
    """Store the summary (and the start instant, when known) and mark the experiment ended."""
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE experiments SET ended_at = now(), summary = %s, "
                    "start_epoch_us = COALESCE(%s, start_epoch_us) WHERE experiment_id = %s",
                    (json.dumps(summary), start_epoch_us, experiment_id))


def finish_experiment(database: DatabaseConfiguration, experiment_id: int, summary: dict,
                      start_epoch_us: int | None) -> None:
    """:func:`end_experiment` on a fresh connection; :class:`StoreUnavailable` when the server cannot be used."""
    try:
        conn = database.connect()
        try:
            end_experiment(conn, experiment_id, summary, start_epoch_us)
        finally:
            conn.close()
    except (DatabaseError, psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        raise StoreUnavailable(str(exc).strip()) from exc


# --------------------------------------------------------------------------- functions

FUNCTION_COLUMNS = ("name", "package", "runtime", "image", "code_path", "main", "memory_mb", "timeout_ms",
                    "log_size_mb", "concurrency", "input_kind", "parameter_specs", "manifest_path")


def upsert_functions(conn, rows: list[FunctionRow]) -> int:
    """Insert or update functions by name; return how many rows were written."""
    values = [tuple(json.dumps(list(r.parameter_specs)) if c == "parameter_specs" else getattr(r, c)
                    for c in FUNCTION_COLUMNS) for r in rows]
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
