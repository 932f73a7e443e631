"""The dataset store against a real PostgreSQL: schema, idempotent batches, the writer thread."""


import pytest

from loader import DatabaseConfiguration
from loader.storage import experiments, schema
from loader.storage import writer as store
from loader.storage.database import DatabaseError
from loader.storage.rows import (
    ResourceSample,
    ResourceSamples,
    RunKey,
    RunParameters,
    RunResources,
    RunStatus,
    RunUpdate,
)


def _count(conn, table):
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


def _batch(experiment_id, n=3):
    items = []
    for seq in range(n):
        key = RunKey(experiment_id, "alice-resize-256", seq)
        items.append(RunUpdate(key, "alice", "resize", planned_offset_us=seq * 1000, status=RunStatus.SENT,
                               sent_offset_us=seq * 1000 + 50, lateness_us=50, activation_id=f"{seq:032x}"))
        items.append(RunParameters(key, (("object", f"{seq}.jpg"), ("width", "256"))))
        items.append(RunResources(key, ResourceSamples.of((ResourceSample(1_700_000_000_000_000 + seq, 1024, 0),
                                        ResourceSample(1_700_000_000_010_000 + seq, 2048, 5_000_000)))))
    return items


def test_migrations_are_idempotent(database):
    conn = experiments.open_store(database)
    assert schema.current_version(conn) == schema.MIGRATIONS[-1][0]
    assert schema.migrate(conn) == []
    with conn.cursor() as cur:
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'runs'")
        assert "runs_activation_id" in {r[0] for r in cur.fetchall()}


def test_same_batch_twice_leaves_one_copy_of_each_row(database):
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="e1", mode="injection")
    batch = _batch(experiment_id)
    store.write_batch(conn, batch)
    store.write_batch(conn, batch)
    assert (_count(conn, "runs"), _count(conn, "parameters"), _count(conn, "resources")) == (3, 6, 6)


def _samples(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT r.seq, s.sampled_at_us, s.memory_bytes, s.rss_mapped_bytes, s.cpu_ns "
                    "FROM resources s JOIN runs r USING (run_id) ORDER BY r.seq, s.sampled_at_us")
        return cur.fetchall()


def test_a_runs_samples_are_one_row_of_arrays_in_time_order_read_one_per_row_from_resources(database):
    """Migration 9: the samples out of order, with a date twice and unmeasured values, are one row
    of run_samples in time order, the first sample of a date kept; the view resources gives them
    one per row with the former table's columns."""
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="e-arrays", mode="injection")
    key = RunKey(experiment_id, "t", 0)
    store.write_batch(conn, [
        RunUpdate(key, "u", "a", 0, RunStatus.SUCCESS),
        RunResources(key, ResourceSamples.of((ResourceSample(30, 3000, 300, 33), ResourceSample(10, None, 100),
                           ResourceSample(20, 2000, None, 22), ResourceSample(10, 9999, 999, 99))))])
    with conn.cursor() as cur:
        cur.execute("SELECT sampled_at_us, memory_bytes, rss_mapped_bytes, cpu_ns FROM run_samples")
        assert cur.fetchall() == [([10, 20, 30], [None, 2000, 3000], [None, 22, 33], [100, None, 300])]
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'resources' "
                    "ORDER BY ordinal_position")
        assert [r[0] for r in cur.fetchall()] == ["run_id", "sampled_at_us", "memory_bytes", "rss_mapped_bytes",
                                                  "cpu_ns"]
    assert _samples(conn) == [(0, 10, None, None, 100), (0, 20, 2000, 22, None), (0, 30, 3000, 33, 300)]


def test_a_runs_samples_written_again_keep_the_first_row_and_need_their_run(database):
    """Two answers for one run (in one batch, or in a later batch whose run is looked up) keep the
    first; samples of a run never written are refused; no samples, no row."""
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="e-again", mode="injection")
    first, second, empty = (RunKey(experiment_id, "t", seq) for seq in range(3))
    store.write_batch(conn, [RunUpdate(first, "u", "a", 0, RunStatus.SUCCESS),
                             RunUpdate(empty, "u", "a", 0, RunStatus.SUCCESS), RunResources(empty, ResourceSamples.of(())),
                             RunResources(first, ResourceSamples.of((ResourceSample(1, 10, 0),))),
                             RunResources(first, ResourceSamples.of((ResourceSample(2, 20, 0),)))])
    store.write_batch(conn, [RunUpdate(second, "u", "a", 0, RunStatus.SUCCESS)])
    store.write_batch(conn, [RunResources(second, ResourceSamples.of((ResourceSample(5, 50, 0), ResourceSample(6, 60, 1))))])
    store.write_batch(conn, [RunResources(second, ResourceSamples.of((ResourceSample(7, 70, 0),)))])
    assert _samples(conn) == [(0, 1, 10, None, 0), (1, 5, 50, None, 0), (1, 6, 60, None, 1)]
    assert _count(conn, "run_samples") == 2
    with pytest.raises(store.StoreError, match="never written"):
        store.write_batch(conn, [RunResources(RunKey(experiment_id, "t", 9), ResourceSamples.of((ResourceSample(1, 1, 0),)))])


def test_a_sample_that_is_not_a_number_never_reaches_the_sql_and_costs_only_its_run(database):
    """The arrays are composed as SQL text: a value that is not a number (here a string of SQL) is
    refused before it, and the writer marks only its run store_error."""
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="e-not-a-number", mode="injection")
    writer = store.StoreWriter(database, batch_size=100, flush_interval_s=0.2).start()
    bad = RunKey(experiment_id, "bad", 0)
    for item in _batch(experiment_id, n=2) + [
            RunUpdate(bad, "u", "a", 0, RunStatus.SUCCESS),
            RunResources(bad, ResourceSamples.of((ResourceSample(1, "1}'); DROP TABLE runs; --", 0),)))]:  # type: ignore[arg-type]
        writer.write(item)
    assert writer.flush(timeout_s=30)
    writer.close()
    with conn.cursor() as cur:
        cur.execute("SELECT trace_name, status, status_reason FROM runs ORDER BY trace_name, seq")
        rows = cur.fetchall()
    assert [r[:2] for r in rows] == [("alice-resize-256", "sent")] * 2 + [("bad", "store_error")]
    assert "ValueError" in rows[2][2]
    assert _count(conn, "resources") == 4


def test_migration_9_moves_the_samples_of_a_dataset_written_before_it(database, monkeypatch):
    """A dataset written with one row per sample (schema version 8) keeps every sample, in time order."""
    conn = database.connect()
    monkeypatch.setattr(schema, "MIGRATIONS", [m for m in schema.MIGRATIONS if m[0] <= 8])
    schema.migrate(conn)
    experiment_id = experiments.ensure_experiment(conn, name="e-v8", mode="injection")
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO runs (experiment_id, trace_name, seq, user_name, action_name, planned_offset_us, "
                    "status) VALUES (%s, 't', 0, 'u', 'a', 0, 'success'), (%s, 't', 1, 'u', 'a', 0, 'success')",
                    (experiment_id, experiment_id))
        cur.execute("INSERT INTO resources SELECT r.run_id, v.sampled_at_us, v.memory_bytes, v.rss_mapped_bytes, "
                    "v.cpu_ns FROM runs r JOIN (VALUES "
                    "(0, 20::bigint, 200::bigint, NULL::bigint, 2::bigint), (0, 10, 100, 11, 1), (1, 5, 50, 5, 0)) "
                    "v(seq, sampled_at_us, memory_bytes, rss_mapped_bytes, cpu_ns) ON r.seq = v.seq")
    monkeypatch.undo()
    assert schema.migrate(conn) == [m[0] for m in schema.MIGRATIONS if m[0] > 8]
    assert _samples(conn) == [(0, 10, 100, 11, 1), (0, 20, 200, None, 2), (1, 5, 50, 5, 0)]
    with conn.cursor() as cur:
        cur.execute("SELECT sampled_at_us FROM run_samples ORDER BY run_id")
        assert [r[0] for r in cur.fetchall()] == [[10, 20], [5]]


def test_terminal_status_is_never_overwritten_and_fields_merge(database):
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="e1", mode="injection")
    key = RunKey(experiment_id, "t", 0)
    done = RunUpdate(key, "u", "a", 0, RunStatus.SUCCESS, duration_ms=12, cold_start=True)
    late_sent = RunUpdate(key, "u", "a", 0, RunStatus.SENT, activation_id="a" * 32)
    store.write_batch(conn, [done])
    store.write_batch(conn, [late_sent])
    store.write_batch(conn, [RunUpdate(key, "u", "a", 0, RunStatus.SENT, lateness_us=7), done])
    with conn.cursor() as cur:
        cur.execute("SELECT status, duration_ms, cold_start, activation_id, lateness_us FROM runs")
        assert cur.fetchall() == [("success", 12, True, "a" * 32, 7)]


def test_every_value_comes_back_as_written(database):
    """A batch is one statement whose values the writer composes: text with tabs, line ends,
    backslashes, quotes, placeholders, braces, dollar quotes, SQL and non-ASCII characters, NULLs,
    booleans, big integers and special floats come back unchanged, in runs, parameters and
    resources alike."""
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="values", mode="injection")
    key = RunKey(experiment_id, "tab\tname", 0)
    awkward = "a\tb\nc\r\\d\\N 'quoted' \"double\" é 日本 \x7f %s %(x)s {values} $$ '); DROP TABLE runs; --"
    update = RunUpdate(key, "u\\ser", "pkg/act ion", 2**62, RunStatus.APPLICATION_ERROR, status_reason=awkward,
                       result_error="\\N", cold_start=False, extract_ms=float("inf"), transform_ms=-0.0,
                       load_ms=1e-300, output_size_bytes=2**63 - 1, duration_ms=None, kernel_peak_source="activation")
    store.write_batch(conn, [update, RunParameters(key, (("na\tme", awkward), ("empty", ""))),
                             RunResources(key, ResourceSamples.of((ResourceSample(-(2**63), None, 2**63 - 1, 0),)))])
    with conn.cursor() as cur:
        cur.execute("SELECT trace_name, user_name, action_name, planned_offset_us, status, status_reason, result_error, "
                    "cold_start, extract_ms, transform_ms, load_ms, output_size_bytes, duration_ms, kernel_peak_source "
                    "FROM runs")
        assert cur.fetchall() == [("tab\tname", "u\\ser", "pkg/act ion", 2**62, "application_error", awkward, "\\N",
                                   False, float("inf"), -0.0, 1e-300, 2**63 - 1, None, "activation")]
        cur.execute("SELECT name, value FROM parameters ORDER BY name")
        assert cur.fetchall() == [("empty", ""), ("na\tme", awkward)]
        cur.execute("SELECT sampled_at_us, memory_bytes, cpu_ns, rss_mapped_bytes FROM resources")
        assert cur.fetchall() == [(-(2**63), None, 2**63 - 1, 0)]
    conn.close()


def test_a_value_out_of_its_column_range_costs_only_its_run(database):
    """An integer beyond bigint, refused by the server, marks only its run ``store_error``."""
    writer = store.StoreWriter(database, flush_interval_s=0.01).start()
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="range", mode="injection")
    good, bad = RunKey(experiment_id, "t", 0), RunKey(experiment_id, "t", 1)
    writer.write_many([RunUpdate(good, "u", "a", 0, RunStatus.SUCCESS, output_size_bytes=2**63 - 1),
                       RunUpdate(bad, "u", "a", 1, RunStatus.SUCCESS, output_size_bytes=2**63)])
    writer.close()
    with conn.cursor() as cur:
        cur.execute("SELECT seq, status, output_size_bytes, status_reason LIKE '%out of range%' FROM runs ORDER BY seq")
        assert cur.fetchall() == [(0, "success", 2**63 - 1, None), (1, "store_error", None, True)]
    conn.close()


def test_children_of_unknown_runs_are_an_error_not_silence(database):
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="e1", mode="injection")
    with pytest.raises(store.StoreError, match="never written"):
        store.write_batch(conn, [RunParameters(RunKey(experiment_id, "t", 9), (("a", "1"),))])


def test_children_find_their_run_in_the_batch_or_stored_before(database):
    """Parameters and samples whose run is upserted in the same batch take its id from the upsert;
    those of a run stored by an earlier batch look it up; a batch with a child of an unknown run
    writes nothing."""
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="children", mode="injection")
    stored, fresh, unknown = (RunKey(experiment_id, "t", seq) for seq in range(3))
    store.write_batch(conn, [RunUpdate(stored, "u", "a", 0, RunStatus.SENT)])
    samples = (ResourceSample(1_700_000_000_000_000, 1024, 0), ResourceSample(1_700_000_000_010_000, 2048, 7))
    later = [RunParameters(stored, (("p", "s"),)), RunResources(stored, ResourceSamples.of(samples)),
             RunUpdate(fresh, "u", "a", 1, RunStatus.SUCCESS), RunParameters(fresh, (("p", "f"),)),
             RunResources(fresh, ResourceSamples.of(samples[:1]))]
    with pytest.raises(store.StoreError, match=r"never written.*seq=2"):
        store.write_batch(conn, later + [RunResources(unknown, ResourceSamples.of(samples))])
    assert (_count(conn, "runs"), _count(conn, "parameters"), _count(conn, "resources")) == (1, 0, 0)
    store.write_batch(conn, later)
    with conn.cursor() as cur:
        cur.execute("SELECT r.seq, p.value, count(s.sampled_at_us), max(s.cpu_ns) FROM runs r "
                    "JOIN parameters p USING (run_id) JOIN resources s USING (run_id) GROUP BY 1, 2 ORDER BY 1")
        assert cur.fetchall() == [(0, "s", 2, 7), (1, "f", 1, 0)]
    conn.close()


def test_experiments_live_side_by_side(database):
    conn = experiments.open_store(database)
    first = experiments.ensure_experiment(conn, name="e1", mode="injection")
    second = experiments.ensure_experiment(conn, name="e2", mode="injection")
    store.write_batch(conn, _batch(first) + _batch(second))
    assert first != second and _count(conn, "runs") == 6
    assert experiments.ensure_experiment(conn, name="e1", mode="injection") == first
    with pytest.raises(store.StoreError, match="mode"):
        experiments.ensure_experiment(conn, name="e1", mode="generation")


def test_writer_batches_and_flushes(database):
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="e1", mode="injection")
    writer = store.StoreWriter(database, batch_size=4, flush_interval_s=0.05).start()
    for item in _batch(experiment_id, n=10):
        writer.write(item)
    writer.close()
    assert _count(conn, "runs") == 10 and _count(conn, "resources") == 20
    assert writer.stats.batches_written >= 30 / 4


def test_writer_retries_through_a_database_outage(database, pg_cluster):
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="e1", mode="injection")
    conn.close()
    writer = store.StoreWriter(database, flush_interval_s=0.01, retry_interval_s=0.2).start()
    pg_cluster.stop(mode="fast")  # a restart, as an operator would do it
    try:
        for item in _batch(experiment_id, n=5):
            writer.write(item)
        assert not writer.flush(timeout_s=1.0)
        assert writer.stats.batches_retried >= 1
    finally:
        pg_cluster.start(durable=False)
    writer.close(timeout_s=30)
    conn = database.connect()
    assert _count(conn, "runs") == 5 and _count(conn, "parameters") == 10


def test_fatal_errors_surface(database):
    experiments.open_store(database)
    writer = store.StoreWriter(database, flush_interval_s=0.01).start()
    writer.write(RunParameters(RunKey(424242, "t", 0), (("a", "1"),)))
    with pytest.raises(store.StoreError):
        writer.close(timeout_s=10)


def test_unreachable_database_names_the_server():
    config = DatabaseConfiguration(user="x", host="127.0.0.1", port=1, database="nope")
    with pytest.raises(DatabaseError, match=r"cannot connect to PostgreSQL \(x@127.0.0.1:1/nope\)"):
        config.connect(timeout_s=1)


def test_database_configuration_as_in_original_readme():
    cfg = DatabaseConfiguration(user="faasload", password="secret", database="faasload")
    assert cfg.connect_kwargs() == {"user": "faasload", "dbname": "faasload", "port": 5432, "password": "secret"}
    assert "secret" not in DatabaseConfiguration(dsn="host=h password=secret dbname=d").describe()


def test_database_status_constraint_equals_the_run_status_enum(database):
    """Fails when RunStatus gains or loses a member without a migration re-deriving the constraint."""
    conn = experiments.open_store(database)
    assert schema.status_constraint_values(conn) == {status.value for status in RunStatus}
    experiment_id = experiments.ensure_experiment(conn, name="e-status", mode="injection")
    with pytest.raises(Exception, match=schema.STATUS_CONSTRAINT):
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO runs (experiment_id, trace_name, seq, user_name, action_name, "
                        "planned_offset_us, status) VALUES (%s, 't', 0, 'u', 'a', 0, 'finished')", (experiment_id,))


def test_docs_status_table_is_the_enum():
    from pathlib import Path

    from loader.storage.rows import status_table
    docs = (Path(__file__).resolve().parents[1] / "docs" / "dataset.md").read_text()
    assert status_table() in docs


def test_summary_counts_errors_from_the_enum():
    from loader.storage.summary import RunStats
    stats = RunStats(late_threshold_us=10_000)
    for status in RunStatus:
        if status.terminal:
            stats.record_terminal("a", status)
    assert stats.errors == sum(1 for status in RunStatus if status.error)
    assert stats.summary()["statuses"].keys() == {s.value for s in RunStatus if s.terminal}


def test_database_state_constraint_equals_the_experiment_state_enum(database):
    """Fails when ExperimentState gains or loses a member without a migration re-deriving the constraint."""
    from loader.storage.rows import ExperimentState
    conn = experiments.open_store(database)
    assert schema.state_constraint_values(conn) == {state.value for state in ExperimentState}
    experiment_id = experiments.create_experiment(conn, name="e-state", mode="injection")
    assert experiments.find_experiment(conn, "e-state").state is ExperimentState.RUNNING
    with pytest.raises(Exception, match=schema.STATE_CONSTRAINT):
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE experiments SET state = 'paused' WHERE experiment_id = %s", (experiment_id,))


def test_database_peak_source_constraint_equals_the_peak_source_enum(database):
    """Fails when PeakSource gains or loses a member without a migration changing the constraint."""
    from faasload.monitor_protocol import PeakSource
    conn = experiments.open_store(database)
    assert schema.peak_source_constraint_values(conn) == {source.value for source in PeakSource}
    experiment_id = experiments.ensure_experiment(conn, name="e-peak", mode="injection")
    key = RunKey(experiment_id, "t", 0)
    store.write_batch(conn, [RunUpdate(key, "u", "a", 0, RunStatus.SUCCESS, kernel_peak_memory_bytes=17 << 20,
                                       kernel_peak_source=PeakSource.ACTIVATION.value)])
    with conn.cursor() as cur:
        cur.execute("SELECT kernel_peak_memory_bytes, kernel_peak_source FROM runs")
        assert cur.fetchall() == [(17 << 20, "activation")]
    conn.commit()
    with pytest.raises(Exception, match=schema.PEAK_SOURCE_CONSTRAINT):
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE runs SET kernel_peak_source = 'sampled' WHERE experiment_id = %s", (experiment_id,))


def test_docs_peak_source_table_is_the_enum():
    from pathlib import Path

    from loader.storage.rows import peak_source_table
    docs = (Path(__file__).resolve().parents[1] / "docs" / "dataset.md").read_text()
    assert peak_source_table() in docs


def test_docs_state_table_is_the_enum():
    from pathlib import Path

    from loader.storage.rows import state_table
    docs = (Path(__file__).resolve().parents[1] / "docs" / "dataset.md").read_text()
    assert state_table() in docs


def test_a_taken_name_is_refused_without_a_write_and_the_lease_tells_a_live_loader(database):
    conn = experiments.open_store(database)
    first = experiments.create_experiment(conn, name="e-taken", mode="injection", description="one")
    assert experiments.create_experiment(conn, name="e-taken", mode="injection", description="two") is None
    assert experiments.find_experiment(conn, "e-taken").experiment_id == first
    assert experiments.lease_is_free(conn, "e-taken")
    lease = experiments.ExperimentLease(database, "e-taken")
    try:
        assert not experiments.lease_is_free(conn, "e-taken") and experiments.lease_is_free(conn, "e-other")
        with pytest.raises(experiments.ExperimentBusy, match="'e-taken' is run by another loader"):
            experiments.ExperimentLease(database, "e-taken", exclusive=True)     # a recovery
        experiments.ExperimentLease(database, "e-taken").release()               # another shard
        lease.mark_started(first, 1_700_000_000_000_000)
        assert experiments.find_experiment(conn, "e-taken").start_epoch_us == 1_700_000_000_000_000
    finally:
        lease.release()
    assert experiments.lease_is_free(conn, "e-taken")


def test_a_row_the_database_refuses_is_isolated_and_its_batch_kept(database):
    """Issue 16 item 3: one bad value (here NUL bytes) costs its own run's data, marked store_error with the
    reason; the other runs of the batch are written, and the writer goes on."""
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="e-nul", mode="injection")
    writer = store.StoreWriter(database, batch_size=100, flush_interval_s=0.2).start()
    good = _batch(experiment_id, n=3)
    bad_result = RunUpdate(RunKey(experiment_id, "other", 0), "bob", "echo", 0, RunStatus.APPLICATION_ERROR,
                           sent_offset_us=10, lateness_us=10, activation_id="b" * 32, result_error="x\x00y")
    bad_parameter = [RunUpdate(RunKey(experiment_id, "other", 1), "bob", "echo", 5, RunStatus.SENT,
                               sent_offset_us=7, lateness_us=2, invoke_attempts=1, activation_id="c" * 32),
                     RunParameters(RunKey(experiment_id, "other", 1), (("object", "a\x00.jpg"),))]
    for item in good[:3] + [bad_result] + bad_parameter + good[3:]:
        writer.write(item)
    assert writer.flush(timeout_s=30)
    later = RunUpdate(RunKey(experiment_id, "other", 1), "bob", "echo", 5, RunStatus.SUCCESS, duration_ms=9)
    writer.write(later)                                  # the writer goes on; the run keeps its terminal mark
    writer.close()
    with conn.cursor() as cur:
        cur.execute("SELECT trace_name, seq, status, status_reason, sent_offset_us, activation_id, duration_ms "
                    "FROM runs ORDER BY trace_name, seq")
        rows = cur.fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("alice-resize-256", 0, "sent"), ("alice-resize-256", 1, "sent"),
                                                  ("alice-resize-256", 2, "sent"), ("other", 0, "store_error"),
                                                  ("other", 1, "store_error")]
    assert rows[3][3] == ("the database refused its row (ValueError: A string literal cannot contain NUL "
                          "(0x00) characters.); its status then: application_error; what was refused is not stored")
    assert rows[3][4:6] == (10, "b" * 32) and rows[4][4:7] == (7, "c" * 32, 9)
    assert (_count(conn, "parameters"), _count(conn, "resources")) == (6, 6)
    assert [(r["trace"], r["seq"]) for r in writer.stats.rejected] == [("other", 0), ("other", 1)]
