"""The store writer in a process of its own (loader/storage/writer_process.py) against a real PostgreSQL.

What is written is committed, counted (the durable callbacks of :class:`DurableSink` fire only
then), flushed and closed as with the writer thread; a refused value costs only its run; a
child that dies is an error the next write or flush raises, never silence.  The writer thread
itself is tested in test_store.py.
"""

from __future__ import annotations

import os
import pickle
import signal
import time

import pytest

from loader.storage import experiments
from loader.storage.database import StoreError
from loader.storage.recorder import DurableSink
from loader.storage.rows import (
    ResourceSample,
    ResourceSamples,
    RunKey,
    RunParameters,
    RunResources,
    RunStatus,
    RunUpdate,
)
from loader.storage.writer_process import WriterProcess

pytestmark = pytest.mark.timeout(120)


def _items(experiment_id: int, seqs) -> list:
    items = []
    for seq in seqs:
        key = RunKey(experiment_id, "alice-resize", seq)
        items.append(RunUpdate(key, "alice", "resize", seq * 1000, RunStatus.SUCCESS, duration_ms=seq))
        items.append(RunParameters(key, (("object", f"{seq}.jpg"),)))
        items.append(RunResources(key, ResourceSamples.of((ResourceSample(1_700_000_000_000_000 + seq, 1024, 0),))))
    return items


def _counts(conn, experiment_id: int) -> tuple:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(duration_ms), (SELECT count(*) FROM parameters), "
                    "(SELECT count(*) FROM resources) FROM runs WHERE experiment_id = %s", (experiment_id,))
        found = cur.fetchone()
    conn.commit()
    return found


def test_written_items_are_committed_counted_and_their_callbacks_fired(database):
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="wp", mode="injection")
    writer = WriterProcess(database, batch_size=50, flush_interval_s=0.01).start()
    sink = DurableSink(writer)
    fired: list[int] = []
    for seq in range(200):
        key = RunKey(experiment_id, "alice-resize", seq)
        sink.write(RunUpdate(key, "alice", "resize", seq, RunStatus.SUCCESS, duration_ms=1),
                   lambda seq=seq: fired.append(seq))
    assert writer.flush(30)
    assert writer.pending == 0 and writer.stats.items_written == 200
    assert sink.fire() == 200 and fired == list(range(200))    # in order, once committed
    writer.write_many(_items(experiment_id, range(200, 210)))
    writer.close()
    assert _counts(conn, experiment_id) == (210, 200 + sum(range(200, 210)), 10, 10)
    assert writer.stats.batches_written >= 4
    conn.close()


def test_a_refused_value_costs_only_its_run(database):
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="wp-refused", mode="injection")
    writer = WriterProcess(database, flush_interval_s=0.01).start()
    good, bad = RunKey(experiment_id, "t", 0), RunKey(experiment_id, "t", 1)
    writer.write_many([RunUpdate(good, "u", "a", 0, RunStatus.SUCCESS, result_error="fine"),
                       RunUpdate(bad, "u", "a", 1, RunStatus.SUCCESS, result_error="nul\x00byte")])
    writer.close()
    with conn.cursor() as cur:
        cur.execute("SELECT seq, status FROM runs WHERE experiment_id = %s ORDER BY seq", (experiment_id,))
        assert cur.fetchall() == [(0, "success"), (1, "store_error")]
    assert [r["seq"] for r in writer.stats.rejected] == [1]
    conn.close()


def test_a_dead_writer_process_is_an_error_not_silence(database):
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="wp-dead", mode="injection")
    writer = WriterProcess(database, flush_interval_s=0.01).start()
    writer.write_many(_items(experiment_id, range(5)))
    assert writer.flush(30)
    assert writer.process_id is not None
    os.kill(writer.process_id, signal.SIGKILL)
    deadline = time.monotonic() + 10
    with pytest.raises(StoreError, match="store-writer process"):
        while time.monotonic() < deadline:
            writer.write_many(_items(experiment_id, [5]))
            writer.flush(0.5)
    with pytest.raises(StoreError):
        writer.close(timeout_s=1)
    assert _counts(conn, experiment_id)[0] == 5
    conn.close()


def test_rows_cross_the_pipe_unchanged():
    """The rows pickle as their constructor's arguments (loader/storage/rows.py): every field
    survives, defaults included, and a one-field class too."""
    key = RunKey(3, "alice-thumb-0", 7)
    rows = [key,
            RunUpdate(key, "alice", "thumb", 1_500, RunStatus.SUCCESS, "1.jpg", 1_510, 10, None, 202, 1, "a" * 32,
                      start_ms=1, end_ms=2, duration_ms=1, cold_start=True, kind="python:3.11",
                      resources_status="ok", invoker="invoker0", kernel_peak_memory_bytes=5),
            RunUpdate(key, "alice", "thumb", 0, RunStatus.SENT),
            RunParameters(key, (("width", "100"), ("object", "1.jpg"))),
            RunResources(key, ResourceSamples.of((ResourceSample(1, 2, 3), ResourceSample(4, None, None, 9))))]
    assert pickle.loads(pickle.dumps(rows, pickle.HIGHEST_PROTOCOL)) == rows
