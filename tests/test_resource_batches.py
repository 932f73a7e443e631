"""The completion side's monitor stage (loader/completion/resource_batches.py) and the writer's
flush, against a real PostgreSQL: batches by size and by time, one query per batch, rows not held
past ``answer_wait_s`` by a slow monitor and still one row per run once its answer comes, a monitor
down recorded as such, nothing lost, an ``unknown`` answer asked once more.  The monitor is a fake of
the client's one method (or a real client of an absent socket), and a real monitor whose notices
come after the first query; a real monitor answers batches in tests/test_monitor_batch.py."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

from faasload.clock import FakeClock
from faasload.monitor_protocol import KernelPeak, PeakSource
from loader.completion.resource_batches import BatchSettings, ResourceBatches
from loader.completion.tracker import Pending
from loader.monitor_client import MonitorAnswer, MonitorClient, ResourcesStatus
from loader.plan import PlannedInvocation
from loader.platform.client import InvokeOutcome, InvokeStatus
from loader.platform.keys import parse_key
from loader.storage import experiments
from loader.storage import writer as store
from loader.storage.recorder import DurableSink, Recorder
from loader.storage.rows import NO_SAMPLES, ResourceSample, ResourceSamples, RunStatus
from loader.storage.summary import RunStats, format_summary

USER = parse_key("00000000-0000-0000-0000-000000000000:key", "alice", "alice")
SETTINGS = BatchSettings(batch_max=3, batch_wait_s=0.01, answer_wait_s=0.05)
V2 = Path(__file__).parent / "fixtures_data" / "cgroup_v2"
V2_CONTAINER = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"   # the container of that tree


class FakeMonitor:
    """Answers each activation with two samples; ``gate`` (when given) holds every answer until set."""

    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate
        self.batches: list[list[str]] = []

    def samples_for_activations(self, queries):
        self.batches.append([q.query.activation for q in queries])
        if self.gate is not None:
            assert self.gate.wait(30)
        return [MonitorAnswer(ResourceSamples.of((ResourceSample(1_700_000_000_000_000, 1000 + n, 0),
                               ResourceSample(1_700_000_000_010_000, 2000 + n, 5))), ResourcesStatus.OK,
                              kernel_peak=KernelPeak(4096 + n, PeakSource.ACTIVATION))
                for n in range(len(queries))]


class Stage:
    """A recorder over a real writer, the stage under test, and runs already ``sent``."""

    def __init__(self, database, monitor, settings=SETTINGS):
        self.conn = experiments.open_store(database)
        self.experiment_id = experiments.ensure_experiment(conn=self.conn, name=f"rb-{uuid.uuid4().hex[:8]}",
                                                           mode="injection")
        self.writer = store.StoreWriter(database, batch_size=100, flush_interval_s=0.01).start()
        self.stored: list[tuple[str, str]] = []
        self.recorder = Recorder(DurableSink(self.writer), self.experiment_id, RunStats(10_000),
                                 on_stored=lambda invocation, status: self.stored.append((invocation.trace_name,
                                                                                          status.value)))
        self.clock = FakeClock()
        self.stage = ResourceBatches(self.recorder, monitor, settings, clock=self.clock)

    def pending(self, count: int) -> list[Pending]:
        out = []
        for seq in range(count):
            activation_id = uuid.uuid4().hex
            invocation = PlannedInvocation(f"t{seq}", 0, "alice", "resize", seq, "1.jpg", (("object", "1.jpg"),))
            self.recorder.dispatched()
            self.recorder.sent(invocation, seq, InvokeOutcome(InvokeStatus.ACCEPTED, 1, activation_id, 202))
            out.append(Pending(invocation, self.recorder.key(invocation), USER, activation_id, 0.0, 600.0))
        return out

    def rows(self):
        self.writer.flush(10)
        self.recorder.sink.fire()
        with self.conn.cursor() as cur:
            cur.execute("SELECT r.trace_name, r.status, r.resources_status, r.resources_reason, "
                        "(SELECT count(*) FROM resources s WHERE s.run_id = r.run_id), r.kernel_peak_source "
                        "FROM runs r WHERE experiment_id = %s ORDER BY trace_name", (self.experiment_id,))
            rows = cur.fetchall()
        self.conn.commit()
        return rows

    def close(self):
        self.stage.close()
        self.writer.close()
        self.conn.close()


def record(activation_id: str) -> dict:
    return {"activationId": activation_id, "namespace": "alice", "name": "resize", "start": 1_700_000_000_000,
            "end": 1_700_000_000_010, "duration": 10, "response": {"status": "success", "statusCode": 0,
                                                                    "success": True, "result": {}},
            "annotations": [{"key": "kind", "value": "python:3.11"}, {"key": "waitTime", "value": 3}]}


@pytest.fixture
def make_stage(database):
    stages = []

    def make(monitor, settings=SETTINGS) -> Stage:
        stage = Stage(database, monitor, settings)
        stages.append(stage)
        return stage

    yield make
    for stage in stages:
        stage.close()


def test_one_query_per_batch_by_size_then_by_time(make_stage):
    monitor = FakeMonitor()
    s = make_stage(monitor)
    runs = s.pending(7)
    for p in runs:
        s.stage.submit(p, record(p.activation_id), None)
    s.stage.tick()                                   # two full batches at once, one completion left
    assert s.stage.collecting == 1 and s.stage.batches == 2
    s.clock.now_s += SETTINGS.batch_wait_s           # the last one waited long enough
    s.stage.tick()
    s.stage.close()
    assert monitor.batches == [[p.activation_id for p in runs[:3]], [p.activation_id for p in runs[3:6]],
                               [runs[6].activation_id]]
    rows = s.rows()
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows] == [("success", "ok", None, 2, "activation")] * 7
    assert sorted(s.stored) == [(f"t{n}", "success") for n in range(7)]
    assert s.recorder.outstanding == 0 and s.recorder.stats.resources == {"ok": 7}


def test_a_slow_monitor_does_not_hold_the_rows_and_its_late_answer_updates_them(make_stage):
    gate = threading.Event()
    s = make_stage(FakeMonitor(gate))
    runs = s.pending(2)
    for p in runs:
        s.stage.submit(p, record(p.activation_id), None)
    s.clock.now_s += SETTINGS.batch_wait_s
    s.stage.tick()                                   # asked; the monitor holds its answer
    s.clock.now_s += SETTINGS.answer_wait_s
    s.stage.tick()                                   # too late: the rows are written without it
    rows = s.rows()
    assert [(r[1], r[2], r[4], r[5]) for r in rows] == [("success", "pending", 0, None)] * 2
    assert "had not answered 50 ms after it was asked" in rows[0][3]
    assert len(s.stored) == 2 and s.recorder.outstanding == 0     # terminal, committed, the mode told
    gate.set()
    s.stage.close()                                  # waits for the answer, which updates the same rows
    rows = s.rows()
    assert [(r[1], r[2], r[4], r[5]) for r in rows] == [("success", "ok", 2, "activation")] * 2
    assert rows[0][3] == "answered after completion:resources_wait_s (the row was written first, then updated)"
    assert s.stage.late_answers == 2 and len(s.stored) == 2
    assert s.recorder.stats.resources == {"ok": 2}
    assert s.recorder.stats.statuses == {RunStatus.SUCCESS: 2}


def test_the_wait_follows_a_slow_monitor_up_to_its_bound(make_stage):
    """A batch answered 0.2 s after it was asked makes the next batches wait 1.5 × that, capped at
    ``answer_wait_max_s`` (0.25 s here): their rows are held, not written ``pending`` at 50 ms."""
    gate = threading.Event()
    s = make_stage(FakeMonitor(gate), BatchSettings(batch_max=3, batch_wait_s=0.01, answer_wait_s=0.05,
                                                    answer_wait_max_s=0.25))
    first, second = s.pending(2)
    s.stage.submit(first, record(first.activation_id), None)
    s.clock.now_s += 0.01
    s.stage.tick()                                   # asked; the monitor holds its answer
    s.clock.now_s += 0.2
    gate.set()                                       # answered 0.2 s after it was asked (no tick meanwhile)
    deadline = time.monotonic() + 10
    while s.stage.answer_wait_s == 0.05 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.stage.answer_wait_s == 0.25 and s.stage.late_answers == 0
    gate.clear()
    s.stage.submit(second, record(second.activation_id), None)
    s.clock.now_s += 0.01
    s.stage.tick()                                   # asked with the longer wait
    s.clock.now_s += 0.2
    s.stage.tick()                                   # 0.2 s: still waiting for the answer
    assert [(r[0], r[1]) for r in s.rows()] == [("t0", "success"), ("t1", "sent")]
    s.clock.now_s += 0.05
    s.stage.tick()                                   # 0.25 s: written without it
    rows = s.rows()
    assert (rows[1][1], rows[1][2]) == ("success", "pending") and "250 ms after it was asked" in rows[1][3]
    gate.set()
    s.stage.close()
    assert [(r[1], r[2]) for r in s.rows()] == [("success", "ok")] * 2 and s.stage.late_answers == 1


def test_monitor_down_is_recorded_and_nothing_is_lost(make_stage, tmp_path):
    s = make_stage(MonitorClient(tmp_path / "no-monitor", timeout_s=1))
    runs = s.pending(5)
    for p in runs[:4]:
        s.stage.submit(p, record(p.activation_id), None)
    s.stage.submit(runs[4], None, "no activation record")          # lost: recorded at once, not asked
    s.stage.close()
    rows = s.rows()
    assert [(r[1], r[2]) for r in rows] == [("success", "monitor_down")] * 4 + [("lost", None)]
    assert "No such file or directory" in rows[0][3]
    assert len(s.stored) == 5 and s.recorder.outstanding == 0


def test_without_a_monitor_runs_are_recorded_at_once(make_stage):
    s = make_stage(None)
    (p,) = s.pending(1)
    s.stage.submit(p, record(p.activation_id), None)
    assert [(r[1], r[2]) for r in s.rows()] == [("success", None)]


def test_a_failing_client_costs_the_batch_its_samples_not_its_rows(make_stage):
    class Broken:
        def samples_for_activations(self, queries):
            raise RuntimeError("a bug in the client")

    s = make_stage(Broken())
    runs = s.pending(2)
    for p in runs:
        s.stage.submit(p, record(p.activation_id), None)
    s.stage.close()
    rows = s.rows()
    assert [(r[1], r[2], r[3]) for r in rows] == [("success", "error", "RuntimeError: a bug in the client")] * 2


def test_a_dead_stage_thread_hands_over_to_the_fetch_threads(make_stage):
    monitor = FakeMonitor()
    s = make_stage(monitor)
    first, second = s.pending(2)
    s.stage.submit(first, record(first.activation_id), None)   # collected, never ticked: the thread died
    s.stage.bypass()                                            # asked now
    s.stage.submit(second, record(second.activation_id), None)  # asked in this thread, alone
    s.stage.close()
    assert [(r[1], r[2]) for r in s.rows()] == [("success", "ok")] * 2
    assert sorted(monitor.batches) == sorted([[first.activation_id], [second.activation_id]])


# --------------------------------------------------------------------------- the writer's flush

def test_writer_flushes_a_full_batch_at_once_and_a_partial_one_after_its_interval(database):
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name=f"flush-{uuid.uuid4().hex[:8]}", mode="injection")
    recorder_stats = RunStats(10_000)
    on_size = store.StoreWriter(database, batch_size=4, flush_interval_s=3600).start()
    recorder = Recorder(DurableSink(on_size), experiment_id, recorder_stats)
    invocations = [PlannedInvocation(f"f{n}", 0, "alice", "resize", n, "1.jpg", ()) for n in range(3)]
    try:
        recorder.sent(invocations[0], 0, InvokeOutcome(InvokeStatus.ACCEPTED, 1, "a" * 32, 202))
        recorder.sent(invocations[1], 0, InvokeOutcome(InvokeStatus.ACCEPTED, 1, "b" * 32, 202))  # 4 items
        assert on_size.flush(timeout_s=20)          # written on size, an hour before its interval
        assert on_size.stats.batches_written == 1
        recorder.sent(invocations[2], 0, InvokeOutcome(InvokeStatus.ACCEPTED, 1, "c" * 32, 202))  # 2 items
        time.sleep(0.3)
        assert on_size.pending == 2                 # a partial batch waits for its interval
    finally:
        conn.close()
    on_time = store.StoreWriter(database, batch_size=500, flush_interval_s=0.05).start()
    try:
        other = Recorder(DurableSink(on_time), experiment_id, recorder_stats)
        other.sent(PlannedInvocation("g", 0, "alice", "resize", 0, "1.jpg", ()), 0,
                   InvokeOutcome(InvokeStatus.ACCEPTED, 1, "d" * 32, 202))
        assert on_time.flush(timeout_s=20) and on_time.stats.batches_written == 1  # 2 of 500: on time
    finally:
        on_time.close()
    on_size.close()                                  # close flushes what waits
    assert on_size.stats.items_written == 6


# --------------------------------------------------------------------------- an unknown answer, asked again

class LateNoticeMonitor(FakeMonitor):
    """Answers ``unknown`` for the activations in ``unknown`` (as a monitor before their notices), the
    others as :class:`FakeMonitor`; ``known`` moves an activation out of that set."""

    def __init__(self, unknown: set[str]):
        super().__init__()
        self.unknown = set(unknown)

    def samples_for_activations(self, queries):
        answers = super().samples_for_activations(queries)
        return [MonitorAnswer(NO_SAMPLES, ResourcesStatus.UNKNOWN, f"unknown activation {q.query.activation}")
                if q.query.activation in self.unknown else answer for q, answer in zip(queries, answers)]


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_an_unknown_answer_is_asked_again_later_and_its_second_answer_recorded(make_stage):
    s = make_stage(None)
    first, second = s.pending(2)
    monitor = LateNoticeMonitor({first.activation_id})
    s.stage = ResourceBatches(s.recorder, monitor, SETTINGS, clock=s.clock)
    for p in (first, second):
        s.stage.submit(p, record(p.activation_id), None)
    s.clock.now_s += SETTINGS.batch_wait_s
    s.stage.tick()                                      # both asked; the first one is unknown
    wait_until(lambda: s.stage.to_ask_again == 1)
    rows = s.rows()
    assert [(r[0], r[1], r[2]) for r in rows] == [("t0", "sent", None), ("t1", "success", "ok")]  # held, not written
    monitor.unknown.clear()                             # the monitor handles the late notice
    s.clock.now_s += SETTINGS.reask_unknown_s - 0.001
    s.stage.tick()
    assert monitor.batches[1:] == [] and s.stage.to_ask_again == 1    # not before its time
    s.clock.now_s += 0.001
    s.stage.tick()                                      # asked again now
    s.stage.close()
    assert monitor.batches[1:] == [[first.activation_id]]
    rows = s.rows()
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [("success", "ok", None, 2)] * 2
    assert s.recorder.stats.resources == {"ok": 2}
    summary = s.recorder.stats.summary()
    assert summary["resources_asked_again"] == {"known": 1}
    assert "monitor answers unknown, asked again: 1, known then 1" in format_summary({**summary, "issued": 2})
    assert sorted(s.stored) == [("t0", "success"), ("t1", "success")] and s.recorder.outstanding == 0


def test_an_activation_still_unknown_when_asked_again_says_so(make_stage):
    s = make_stage(None)
    (p,) = s.pending(1)
    monitor = LateNoticeMonitor({p.activation_id})
    s.stage = ResourceBatches(s.recorder, monitor, SETTINGS, clock=s.clock)
    s.stage.submit(p, record(p.activation_id), None)
    s.clock.now_s += SETTINGS.batch_wait_s
    s.stage.tick()
    wait_until(lambda: s.stage.to_ask_again == 1)
    s.clock.now_s += SETTINGS.reask_unknown_s
    s.stage.tick()
    s.stage.close()
    assert monitor.batches == [[p.activation_id]] * 2
    ((_, status, resources, reason, samples, _),) = s.rows()
    assert (status, resources, samples) == ("success", "unknown", 0)
    assert reason == (f"unknown activation {p.activation_id}; still unknown when asked again 0.5 s later "
                      "(completion:resources_reask_unknown_s)")
    assert s.recorder.stats.summary()["resources_asked_again"] == {"unknown": 1}


def test_asking_again_can_be_turned_off(make_stage):
    s = make_stage(None)
    (p,) = s.pending(1)
    monitor = LateNoticeMonitor({p.activation_id})
    s.stage = ResourceBatches(s.recorder, monitor, BatchSettings(batch_max=3, batch_wait_s=0.01, answer_wait_s=0.05,
                                                                 reask_unknown_s=0), clock=s.clock)
    s.stage.submit(p, record(p.activation_id), None)
    s.stage.close()
    assert monitor.batches == [[p.activation_id]]
    assert [(r[2], r[3]) for r in s.rows()] == [("unknown", f"unknown activation {p.activation_id}")]
    assert "resources_asked_again" not in s.recorder.stats.summary()


def test_closing_asks_again_at_once_and_never_holds_a_row(make_stage):
    """A re-ask waiting when the stage closes is asked then; an unknown answer that comes while it
    closes is recorded as it is: every run has its row when ``close`` returns."""
    s = make_stage(None)
    first, second = s.pending(2)
    monitor = LateNoticeMonitor({first.activation_id, second.activation_id})
    s.stage = ResourceBatches(s.recorder, monitor, SETTINGS, clock=s.clock)
    s.stage.submit(first, record(first.activation_id), None)
    s.clock.now_s += SETTINGS.batch_wait_s
    s.stage.tick()
    wait_until(lambda: s.stage.to_ask_again == 1)        # the first waits to be asked again, 0.5 s from now
    monitor.unknown.discard(first.activation_id)
    s.stage.submit(second, record(second.activation_id), None)
    s.stage.close()                                     # no clock step: both asked now, nothing held
    assert sorted(monitor.batches[1:]) == sorted([[first.activation_id], [second.activation_id]])
    assert [(r[0], r[2]) for r in s.rows()] == [("t0", "ok"), ("t1", "unknown")]
    assert s.recorder.outstanding == 0 and s.stage.to_ask_again == 0


def test_a_real_monitor_that_gets_the_notices_late_is_asked_again(make_stage, monitor_factory, tmp_path):
    """A real monitor sampling a container: the loader's first query comes before the activation's
    notices (unknown), the notices come, the second query gets the activation's samples."""
    tree = tmp_path / "cg"
    shutil.copytree(V2, tree)
    monitor = monitor_factory.start(sampling={"cgroup_root": str(tree), "stat_every": 1}, discovery={"docker": False})
    client = MonitorClient(monitor.measurement_socket, timeout_s=5)
    monitor.notify({"action": "run", "container": V2_CONTAINER})
    wait_until(lambda: bool(client.samples_for_window(V2_CONTAINER, 0, time.time()).samples))
    s = make_stage(None)
    (p,) = s.pending(1)
    s.stage = ResourceBatches(s.recorder, client, SETTINGS, clock=s.clock)
    start_s = time.time()
    time.sleep(0.05)
    end_s = time.time()
    rec = {**record(p.activation_id), "start": int(start_s * 1000), "end": int(end_s * 1000)}
    s.stage.submit(p, rec, None)
    s.clock.now_s += SETTINGS.batch_wait_s
    s.stage.tick()
    wait_until(lambda: s.stage.to_ask_again == 1)       # the monitor had no notice of it
    monitor.notify({"action": "activation_start", "container": V2_CONTAINER, "activation": p.activation_id,
                    "date": start_s})
    monitor.notify({"action": "activation_end", "container": V2_CONTAINER, "activation": p.activation_id,
                    "date": end_s})
    s.clock.now_s += SETTINGS.reask_unknown_s
    s.stage.tick()
    s.stage.close()
    ((_, status, resources, reason, samples, peak_source),) = s.rows()
    assert (status, resources, reason) == ("success", "ok", None) and samples >= 2
    assert s.recorder.stats.summary()["resources_asked_again"] == {"known": 1}


def test_a_late_unknown_answer_is_asked_again_and_updates_the_pending_row(make_stage):
    """The first answer comes after the wait (the row is written ``pending``) and is ``unknown``: the
    activation is asked again, and that answer updates the same row, once."""
    gate = threading.Event()
    s = make_stage(None)
    (p,) = s.pending(1)
    monitor = LateNoticeMonitor({p.activation_id})
    monitor.gate = gate
    s.stage = ResourceBatches(s.recorder, monitor, SETTINGS, clock=s.clock)
    s.stage.submit(p, record(p.activation_id), None)
    s.clock.now_s += SETTINGS.batch_wait_s
    s.stage.tick()                                      # asked; the monitor holds its answer
    s.clock.now_s += SETTINGS.answer_wait_s
    s.stage.tick()                                      # written pending
    assert [(r[1], r[2]) for r in s.rows()] == [("success", "pending")]
    gate.set()                                          # the late answer: unknown
    wait_until(lambda: s.stage.to_ask_again == 1)
    assert [(r[1], r[2]) for r in s.rows()] == [("success", "pending")]   # not updated with the unknown
    monitor.unknown.clear()
    s.clock.now_s += SETTINGS.reask_unknown_s
    s.stage.tick()
    s.stage.close()
    assert monitor.batches == [[p.activation_id]] * 2
    rows = s.rows()
    assert [(r[1], r[2], r[4]) for r in rows] == [("success", "ok", 2)]
    assert rows[0][3] == "answered after completion:resources_wait_s (the row was written first, then updated)"
    assert s.recorder.stats.resources == {"ok": 1} and len(s.stored) == 1 and s.stage.late_answers == 1
    assert s.recorder.stats.summary()["resources_asked_again"] == {"known": 1}
