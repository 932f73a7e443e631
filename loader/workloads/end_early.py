"""The figure for ``--end-early-ms``: what a platform records beyond a calibrated action's duration.

A first replay of a calibrated workload (without ``--end-early-ms``) stores, for each warm run,
the duration the platform recorded (``runs.duration_ms``) and the one the action was asked for
(its ``duration_ms`` parameter).  Per trace function with at least 5 warm runs, the *shift* is
the median recorded less the median asked; the figure is the median of the shifts over those
functions.  Medians per function, not the median of per-run differences:
what is judged is each function's median, and the platform's tail (runs recorded tens of ms
late on a busy host) moves a function's median further than it moves the typical run.  On a
replay of the Azure 2019 sample on a 2-core host the shifts' median was 2.0 ms while the
median per-run difference was 0.65 ms (docs/workloads.md, Mapping, ``calibrated``).

:data:`loader.storage.queries.END_EARLY_SQL` is the query (only ``loader/storage`` runs SQL);
docs/workloads.md shows it, and a test keeps them equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from loader.storage import queries


@dataclass(frozen=True, slots=True)
class EndEarly:
    """The figure (ms; None when no function had enough warm runs) and how many functions gave it."""

    end_early_ms: float | None
    functions: int


def measure(conn, experiment: str) -> EndEarly:
    """The ``--end-early-ms`` figure of experiment ``experiment`` (a calibrated replay) on ``conn``."""
    ((value, functions),) = queries.end_early(conn, experiment).rows
    return EndEarly(None if value is None else float(value), int(functions))
