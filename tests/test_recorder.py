"""The recorder's batch of invoke answers (loader/storage/recorder.py): the same rows as one by one, written at once.

Unit test of one module: the store writer is a fake that keeps what it is given (the real
writer against PostgreSQL is in test_injector_records.py and the end-to-end tests).
"""

from __future__ import annotations

from loader.plan import PlannedInvocation
from loader.platform.client import InvokeOutcome, InvokeStatus
from loader.storage.recorder import DurableSink, Recorder
from loader.storage.rows import RunParameters, RunStatus, RunUpdate
from loader.storage.summary import RunStats


class FakeWriter:
    """What DurableSink needs of a StoreWriter; counts the calls."""

    def __init__(self):
        self.items, self.calls = [], 0
        self.pending = 0
        self.stats = type("Stats", (), {"items_written": 0})()

    def write(self, item):
        self.calls += 1
        self.items.append(item)

    def write_many(self, items):
        self.calls += 1
        self.items.extend(items)

    def commit_all(self):
        self.stats.items_written = len(self.items)


def _invocation(seq):
    return PlannedInvocation("alice-resize", seq, "alice", "resize", seq * 1000, f"{seq}.jpg",
                             (("object", f"{seq}.jpg"),))


ANSWERS = [(_invocation(0), 1500, InvokeOutcome(InvokeStatus.ACCEPTED, 1, "a" * 32, 202)),
           (_invocation(1), 2100, InvokeOutcome(InvokeStatus.THROTTLED, 2, http_status=429, reason="too many")),
           (_invocation(2), 2900, InvokeOutcome(InvokeStatus.CONNECTION_ERROR, 1, reason="refused"))]


def _recorder():
    writer, stored = FakeWriter(), []
    recorder = Recorder(DurableSink(writer), 7, RunStats(1000), on_stored=lambda inv, status: stored.append(
        (inv.seq, status)))
    for _ in ANSWERS:
        recorder.dispatched()
    return writer, recorder, stored


def test_a_batch_writes_the_rows_of_one_by_one_in_one_call_and_settles_the_failures():
    one_writer, one, one_stored = _recorder()
    for answer in ANSWERS:
        one.sent(*answer)
    writer, batched, stored = _recorder()
    batched.sent_batch(ANSWERS)
    assert writer.items == one_writer.items and writer.calls == 1 and one_writer.calls == 3
    statuses = [(type(item), getattr(item, "status", None)) for item in writer.items]
    assert statuses == [(RunUpdate, RunStatus.SENT), (RunParameters, None), (RunUpdate, RunStatus.THROTTLED),
                        (RunParameters, None), (RunUpdate, RunStatus.CONNECTION_ERROR), (RunParameters, None)]
    assert writer.items[0].lateness_us == 1500 and writer.items[2].lateness_us == 1100
    # the accepted one is still outstanding (its completion comes later); the two failures are terminal
    assert batched.outstanding == one.outstanding == 1
    assert batched.stats.issued == 3 and batched.stats.statuses == one.stats.statuses
    assert stored == [] and batched.sink.fire() == 0   # callbacks wait for the commit
    writer.commit_all()
    assert batched.sink.fire() == 2 and stored == [(1, RunStatus.THROTTLED), (2, RunStatus.CONNECTION_ERROR)]


def test_an_empty_batch_writes_nothing():
    writer, recorder, _ = _recorder()
    recorder.sent_batch([])
    assert writer.calls == 0 and recorder.outstanding == 3


def test_without_a_user_event_the_invoker_is_the_one_whose_monitor_knew_the_activation():
    from loader.monitor_client import MonitorAnswer, ResourcesStatus
    record = {"activationId": "a" * 32, "start": 1000, "end": 1200, "duration": 200,
              "response": {"statusCode": 0, "success": True, "result": {}}, "annotations": []}
    writer, recorder, _ = _recorder()
    known = MonitorAnswer((), ResourcesStatus.EMPTY, invoker="invoker1")
    recorder.completed(_invocation(0), "a" * 32, record, None, known)                  # no event
    recorder.completed(_invocation(1), "b" * 32, record, None, known, invoker="invoker0")  # its event wins
    recorder.resources_arrived(_invocation(2), RunStatus.SUCCESS, known)                # a late answer
    assert [item.invoker for item in writer.items if isinstance(item, RunUpdate)] == [
        "invoker1", "invoker0", "invoker1"]
