"""The figure for ``--end-early-ms``: what a platform records beyond a calibrated action's duration.

A first replay of a calibrated workload (without ``--end-early-ms``) stores, for each warm run,
the duration the platform recorded (``runs.duration_ms``) and the one the action was asked for
(its ``duration_ms`` parameter).  Per trace function with at least :data:`MIN_WARM_RUNS` warm
runs, the *shift* is the median recorded less the median asked; the figure is the median of
the shifts over those functions.  Medians per function, not the median of per-run differences:
what is judged is each function's median, and the platform's tail (runs recorded tens of ms
late on a busy host) moves a function's median further than it moves the typical run.  On a
replay of the Azure 2019 sample on a 2-core host the shifts' median was 2.0 ms while the
median per-run difference was 0.65 ms (docs/workloads.md, Mapping, ``calibrated``).

:data:`SQL` is what docs/workloads.md shows (a test keeps them equal); it takes the experiment's
name as ``%(experiment)s``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A function needs this many warm runs for its median to count.
MIN_WARM_RUNS = 5

SQL = f"""\
WITH warm AS (
    SELECT r.trace_name, r.duration_ms, p.value::float8 AS asked_ms
    FROM runs r JOIN experiments e USING (experiment_id)
         JOIN parameters p ON p.run_id = r.run_id AND p.name = 'duration_ms'
    WHERE e.name = %(experiment)s AND r.status = 'success' AND NOT r.cold_start),
per_function AS (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)
           - percentile_cont(0.5) WITHIN GROUP (ORDER BY asked_ms) AS shift_ms
    FROM warm GROUP BY trace_name HAVING count(*) >= {MIN_WARM_RUNS})
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY shift_ms) AS end_early_ms, count(*) AS functions
FROM per_function"""


@dataclass(frozen=True, slots=True)
class EndEarly:
    """The figure (ms; None when no function had enough warm runs) and how many functions gave it."""

    end_early_ms: float | None
    functions: int


def measure(conn, experiment: str) -> EndEarly:
    """The ``--end-early-ms`` figure of experiment ``experiment`` (a calibrated replay) on ``conn``."""
    with conn.cursor() as cur:
        cur.execute(SQL, {"experiment": experiment})
        value, functions = cur.fetchone()
    return EndEarly(None if value is None else float(value), int(functions))
