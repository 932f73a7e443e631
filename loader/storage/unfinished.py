"""What an experiment whose loader died left behind: its runs still ``sent``, and how far each trace went.

Read by the recovery (:mod:`loader.recovery`), which completes those runs through the usual
writer and stores the experiment ``crashed`` (:func:`loader.storage.experiments.end_experiment`).
"""

from __future__ import annotations

from dataclasses import dataclass

from loader.storage.rows import RunStatus


@dataclass(frozen=True, slots=True)
class SentRun:
    """A run the platform accepted and whose record the dead loader never stored."""

    trace_name: str
    seq: int
    user_name: str
    action_name: str
    input_object: str | None
    planned_offset_us: int
    sent_offset_us: int | None
    activation_id: str | None


@dataclass(frozen=True, slots=True)
class TraceProgress:
    """How far a trace went: its rows, and the position after the last one."""

    rows: int
    next_seq: int


def sent_runs(conn, experiment_id: int) -> list[SentRun]:
    """The runs of ``experiment_id`` still ``planned`` or ``sent``, in trace order."""
    with conn.cursor() as cur:
        cur.execute("SELECT trace_name, seq, user_name, action_name, input_object, planned_offset_us, sent_offset_us, "
                    "activation_id FROM runs WHERE experiment_id = %s AND status = ANY(%s) ORDER BY trace_name, seq",
                    (experiment_id, [RunStatus.PLANNED.value, RunStatus.SENT.value]))
        rows = cur.fetchall()
    conn.commit()
    return [SentRun(*row) for row in rows]


def trace_progress(conn, experiment_id: int) -> dict[str, TraceProgress]:
    """Per trace of ``experiment_id``: how many rows, and the position after the last one."""
    with conn.cursor() as cur:
        cur.execute("SELECT trace_name, count(*), max(seq) + 1 FROM runs WHERE experiment_id = %s "
                    "GROUP BY trace_name", (experiment_id,))
        rows = cur.fetchall()
    conn.commit()
    return {name: TraceProgress(count, next_seq) for name, count, next_seq in rows}


def status_counts(conn, experiment_id: int) -> dict[str, int]:
    """How many runs of ``experiment_id`` hold each status."""
    with conn.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM runs WHERE experiment_id = %s GROUP BY status ORDER BY status",
                    (experiment_id,))
        rows = cur.fetchall()
    conn.commit()
    return dict(rows)
