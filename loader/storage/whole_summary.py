"""The summary of a whole experiment, rebuilt from its stored runs (a resumed generation's
sessions each see only their own invocations; its stored summary covers them all)."""

from __future__ import annotations

import logging

import psycopg2

from loader.storage import queries
from loader.storage.database import DatabaseConfiguration, DatabaseError
from loader.storage.rows import RunStatus
from loader.storage.summary import RunStats

log = logging.getLogger(__name__)

#: What the session's own summary keeps: facts of this session only (events read, senders, stop).
SESSION_ONLY = ("user_events", "trace_errors", "senders", "stopped", "start_epoch_us", "failure", "store_errors",
                "unsent")


def stats_of_rows(rows: queries.Rows, late_threshold_us: int, planned_total: int | None) -> RunStats:
    """A :class:`RunStats` fed with stored runs as the recorder feeds it with live ones."""
    stats = RunStats(late_threshold_us, planned_total)
    for (action, status, lateness_us, duration_ms, wait_time_ms, cold_start, has_record, resources_status,
         peak_memory_bytes) in rows.rows:
        if lateness_us is not None:
            stats.record_sent(lateness_us)
        run_status = RunStatus(status)
        if run_status.terminal:
            stats.record_terminal(action, run_status, duration_ms=duration_ms, wait_time_ms=wait_time_ms,
                                  cold_start=cold_start, peak_memory_bytes=peak_memory_bytes, has_record=has_record,
                                  resources_status=resources_status)
    return stats


def whole_experiment_summary(database: DatabaseConfiguration, experiment_id: int, session: dict, *,
                             late_threshold_us: int, planned_total: int | None) -> dict:
    """The experiment's summary over every stored run, with this session's own facts kept and its
    counts under ``session``; the session's summary alone if the database cannot be read now."""
    try:
        conn = database.connect()
        try:
            rows = queries.summary_rows(conn, experiment_id)
        finally:
            conn.close()
    except (DatabaseError, psycopg2.Error) as exc:
        log.warning("the summary covers this session only: reading the experiment's runs failed (%s)", exc)
        return session
    summary = stats_of_rows(rows, late_threshold_us, planned_total).summary()
    summary.update({key: session[key] for key in SESSION_ONLY if key in session})
    summary["session"] = {"planned": session.get("planned"), "issued": session.get("issued"),
                          "statuses": session.get("statuses")}
    return summary
