"""Read queries of the dataset, for :mod:`loader.dataset`, :mod:`loader.export` and :mod:`loader.report`.

Every statement that reads results lives here (only ``loader/storage/`` runs SQL).  A
query returns a :class:`Rows`: the column names as PostgreSQL gives them and the rows as
tuples, in a stable order, so that the callers (pandas frames, exports, reports) need no
SQL and the same database always gives the same output.  Large tables can be read in
chunks (:func:`iter_resources`) through a server-side cursor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg2.extensions


class NoSuchExperiment(LookupError):
    """The experiment named (or numbered) is not in the database."""


@dataclass(frozen=True)
class Rows:
    """The result of one query: column names, their PostgreSQL type OIDs, and rows."""

    columns: tuple[str, ...]
    type_oids: tuple[int, ...]
    rows: list[tuple]


_EXPERIMENT_COLUMNS = ("experiment_id, name, mode, description, started_at, start_epoch_us, ended_at, seed, "
                       "config, summary")


def _fetch(conn: psycopg2.extensions.connection, sql: str, params: tuple | dict = ()) -> Rows:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
        described = _described(cur)
    conn.rollback()  # read-only: end the transaction, never hold a snapshot between calls
    return Rows(*described, rows)


def _described(cur: psycopg2.extensions.cursor) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Column names and type OIDs of the cursor's result."""
    if cur.description is None:
        raise RuntimeError("the query returned no rows description")  # only a statement without result
    return tuple(d.name for d in cur.description), tuple(d.type_code for d in cur.description)


def experiments(conn: psycopg2.extensions.connection) -> Rows:
    """Every experiment, oldest first (``config`` and ``summary`` as dicts, or None)."""
    return _fetch(conn, f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments ORDER BY experiment_id")


def find_experiment(conn: psycopg2.extensions.connection, ref: str | int) -> dict:
    """One experiment as a dict: by id when ``ref`` is an int, else by name, else by id when
    the text is a number.  Raises :class:`NoSuchExperiment` naming the latest experiments.
    """
    found = Rows((), (), [])
    if not isinstance(ref, int):
        found = _fetch(conn, f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE name = %s", (ref,))
    if not found.rows and str(ref).isdigit():
        found = _fetch(conn, f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE experiment_id = %s",
                       (int(ref),))
    if not found.rows:
        known = [f"{name} (id {id_})" for id_, name in
                 _fetch(conn, "SELECT experiment_id, name FROM experiments ORDER BY experiment_id DESC LIMIT 10").rows]
        raise NoSuchExperiment(f"no experiment named {str(ref)!r}" + (" (nor with that id)" if str(ref).isdigit() else "")
                               + (f"; the latest are: {', '.join(known)}" if known else "; the database has none"))
    return dict(zip(found.columns, found.rows[0]))


def runs(conn: psycopg2.extensions.connection, experiment_id: int) -> Rows:
    """Every column of the experiment's runs, by trace then position in the trace."""
    return _fetch(conn, "SELECT * FROM runs WHERE experiment_id = %s ORDER BY trace_name, seq", (experiment_id,))


def parameters(conn: psycopg2.extensions.connection, experiment_id: int) -> Rows:
    """The parameters of the experiment's runs (``run_id, name, value``)."""
    return _fetch(conn, "SELECT p.run_id, p.name, p.value FROM parameters p JOIN runs r USING (run_id) "
                        "WHERE r.experiment_id = %s ORDER BY p.run_id, p.name", (experiment_id,))


_RESOURCES_SQL = ("SELECT s.run_id, s.sampled_at_us, s.memory_bytes, s.rss_mapped_bytes, s.cpu_ns "
                  "FROM resources s JOIN runs r USING (run_id) WHERE r.experiment_id = %s")


def resources(conn: psycopg2.extensions.connection, experiment_id: int,
              run_ids: list[int] | None = None) -> Rows:
    """The monitor's samples of the experiment's runs (all, or of ``run_ids``), by run then time."""
    if run_ids is None:
        return _fetch(conn, _RESOURCES_SQL + " ORDER BY s.run_id, s.sampled_at_us", (experiment_id,))
    return _fetch(conn, _RESOURCES_SQL + " AND s.run_id = ANY(%s) ORDER BY s.run_id, s.sampled_at_us",
                  (experiment_id, list(run_ids)))


def iter_resources(conn: psycopg2.extensions.connection, experiment_id: int,
                   chunk_rows: int = 200_000) -> Iterator[Rows]:
    """The samples of :func:`resources`, ``chunk_rows`` at a time (server-side cursor)."""
    try:
        with conn.cursor(name="faasload_resources") as cur:
            cur.itersize = chunk_rows
            cur.execute(_RESOURCES_SQL + " ORDER BY s.run_id, s.sampled_at_us", (experiment_id,))
            while True:
                rows = cur.fetchmany(chunk_rows)
                if not rows:
                    return
                yield Rows(*_described(cur), rows)
    finally:
        conn.rollback()


def resource_usage(conn: psycopg2.extensions.connection, experiment_id: int) -> Rows:
    """Per run with samples: their count, first and last time, peak memory, CPU time.

    CPU time is the growth of the cumulative ``cpu_ns`` over the run's samples.
    """
    return _fetch(conn, """
        SELECT s.run_id, count(*) AS samples, min(s.sampled_at_us) AS first_sampled_at_us,
               max(s.sampled_at_us) AS last_sampled_at_us, max(s.memory_bytes) AS peak_memory_bytes,
               max(s.rss_mapped_bytes) AS peak_rss_mapped_bytes, max(s.cpu_ns) - min(s.cpu_ns) AS cpu_ns
        FROM resources s JOIN runs r USING (run_id) WHERE r.experiment_id = %s
        GROUP BY s.run_id ORDER BY s.run_id""", (experiment_id,))



def summary_rows(conn: psycopg2.extensions.connection, experiment_id: int) -> Rows:
    """What the end-of-run summary counts, per run of the experiment, by run id: action, status,
    lateness, record fields, monitor status and peak memory."""
    return _fetch(conn, """
        SELECT r.action_name, r.status, r.lateness_us, r.duration_ms, r.wait_time_ms, r.cold_start,
               (r.start_ms IS NOT NULL OR r.end_ms IS NOT NULL) AS has_record, r.resources_status,
               u.peak_memory_bytes
        FROM runs r
        LEFT JOIN (SELECT run_id, max(memory_bytes) AS peak_memory_bytes FROM resources GROUP BY run_id) u
               USING (run_id)
        WHERE r.experiment_id = %s ORDER BY r.run_id""", (experiment_id,))


def recorded_durations(conn: psycopg2.extensions.connection) -> Rows:
    """Per (user, action) with activation records in any experiment: the p99 (nearest rank) of
    the platform's duration plus the wait, in ms, and how many records it is taken from."""
    return _fetch(conn, """
        SELECT user_name, action_name,
               percentile_disc(0.99) WITHIN GROUP (ORDER BY duration_ms + coalesce(wait_time_ms, 0)) AS p99_ms,
               count(*) AS records
        FROM runs WHERE duration_ms IS NOT NULL GROUP BY user_name, action_name ORDER BY user_name, action_name""")


#: A function needs this many warm runs for its median to count in :func:`end_early`.
END_EARLY_MIN_WARM_RUNS = 5

END_EARLY_SQL = f"""\
WITH warm AS (
    SELECT r.trace_name, r.duration_ms, p.value::float8 AS asked_ms
    FROM runs r JOIN experiments e USING (experiment_id)
         JOIN parameters p ON p.run_id = r.run_id AND p.name = 'duration_ms'
    WHERE e.name = %(experiment)s AND r.status = 'success' AND NOT r.cold_start),
per_function AS (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)
           - percentile_cont(0.5) WITHIN GROUP (ORDER BY asked_ms) AS shift_ms
    FROM warm GROUP BY trace_name HAVING count(*) >= {END_EARLY_MIN_WARM_RUNS})
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY shift_ms) AS end_early_ms, count(*) AS functions
FROM per_function"""


def end_early(conn: psycopg2.extensions.connection, experiment: str) -> Rows:
    """One row: the ``--end-early-ms`` figure of a calibrated replay named ``experiment`` (the median
    over its functions of their median recorded − median asked duration, warm successful runs;
    None when no function has enough) and how many functions gave it
    (:mod:`loader.workloads.end_early`)."""
    return _fetch(conn, END_EARLY_SQL, {"experiment": experiment})
