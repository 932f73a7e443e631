"""loader/workloads/end_early.py against a real PostgreSQL: the median over functions of their
median recorded − median asked duration, warm successful runs only; and the docs show its SQL."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from loader.storage import experiments, queries
from loader.storage import writer as store
from loader.storage.rows import RunKey, RunParameters, RunStatus, RunUpdate
from loader.workloads import end_early

DOCS = Path(__file__).resolve().parents[1] / "docs" / "workloads.md"


def _runs(experiment_id: int, trace: str, pairs, *, cold_every: int = 0, status=RunStatus.SUCCESS):
    items = []
    for seq, (recorded_ms, asked_ms) in enumerate(pairs):
        key = RunKey(experiment_id, trace, seq)
        items.append(RunUpdate(key, "u", "a", seq, status, duration_ms=recorded_ms,
                               cold_start=bool(cold_every) and seq % cold_every == 0))
        items.append(RunParameters(key, (("duration_ms", str(asked_ms)), ("memory_mb", "64"))))
    return items


def test_the_figure_is_the_median_of_the_functions_median_shifts(database):
    conn = experiments.open_store(database)
    mine = experiments.create_experiment(conn, name="replay-1", mode="injection")
    other = experiments.create_experiment(conn, name="replay-2", mode="injection")
    items = []
    # f1: asked 10..16, recorded +1 but one run +40 (a tail): median shift 2 (13 → 15), per-run median 1
    items += _runs(mine, "u-f1", [(a + (40 if a == 11 else 1), a) for a in range(10, 17)])
    # f2: +3 everywhere; its cold runs (every 3rd, recorded +500) do not count
    items += _runs(mine, "u-f2", [(a + (500 if i % 3 == 0 else 3), a) for i, a in enumerate(range(100, 109))],
                   cold_every=3)
    # f3: +0; f4: too few warm runs; f5: failed runs
    items += _runs(mine, "u-f3", [(a, a) for a in range(5, 10)])
    items += _runs(mine, "u-f4", [(a + 90, a) for a in range(4)])
    items += _runs(mine, "u-f5", [(a + 90, a) for a in range(9)], status=RunStatus.APPLICATION_ERROR)
    items += _runs(other, "u-f1", [(a + 70, a) for a in range(10, 30)])      # another experiment
    store.write_batch(conn, items)
    figure = end_early.measure(conn, "replay-1")
    assert figure == end_early.EndEarly(pytest.approx(2.0), 3)   # shifts 2, 3, 0
    assert end_early.measure(conn, "replay-2") == end_early.EndEarly(pytest.approx(70.0), 1)
    assert end_early.measure(conn, "no-such") == end_early.EndEarly(None, 0)


def test_the_docs_show_the_query():
    assert textwrap.indent(queries.END_EARLY_SQL.replace("%(experiment)s", "'replay-1'"), "  ") + ";" in DOCS.read_text()
