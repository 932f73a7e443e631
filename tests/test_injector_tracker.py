"""The completion tracker: event → fetch now, 404 backoff, polling without events, final deadline."""

from faasload.clock import FakeClock
from loader.completion.tracker import CompletionTracker, TrackerSettings
from loader.completion.user_events import ActivationEvent
from loader.plan import PlannedInvocation
from loader.platform.client import FetchOutcome, FetchStatus
from loader.platform.keys import UserKey
from loader.storage.rows import RunKey

USER = UserKey("alice", "23bc46b1-71f6-4ed5-8c54-816aa4f8c502", "k")
SETTINGS = TrackerSettings(event_timeout_s=30.0, poll_interval_s=2.0, record_retry_s=0.05, final_deadline_s=600.0,
                           fetches_in_flight=1)


class InlineFetcher:
    """Fetches each record at once, in the calling thread, with the fake client."""

    def __init__(self, client):
        self.client = client

    def fetch(self, pendings, done):
        done([(pending, self.client.get_activation(pending.user, pending.activation_id)) for pending in pendings])

    def close(self):
        pass


class FakeClient:
    """Answers 404 until ``available_at_s`` on the clock, then the record; logs every fetch time."""

    def __init__(self, clock, available_at_s=None, error=False):
        self.clock, self.available_at_s, self.error = clock, available_at_s, error
        self.fetches = []

    def get_activation(self, user, activation_id):
        self.fetches.append(round(self.clock.now_s, 3))
        if self.error:
            return FetchOutcome(FetchStatus.ERROR, reason="ConnectionError: refused")
        if self.available_at_s is not None and self.clock.now_s >= self.available_at_s:
            return FetchOutcome(FetchStatus.FOUND, record={"activationId": activation_id})
        return FetchOutcome(FetchStatus.NOT_FOUND, http_status=404, reason="HTTP 404: not found")


def _tracker(client, clock, settings=SETTINGS):
    done = []
    tracker = CompletionTracker(client, settings, lambda p, record, reason: done.append((p.activation_id, record, reason)),
                                clock=clock, fetcher=InlineFetcher(client))
    return tracker, done


def _register(tracker, activation_id="a" * 32, sent_s=0.0):
    inv = PlannedInvocation("alice-x", 0, "alice", "x", 0, "1.jpg", ())
    tracker.register(inv, RunKey(1, "alice-x", 0), USER, activation_id, sent_s)


def _drive(tracker, clock, until_s):
    while True:
        due = tracker.tick()
        if due is None or due > until_s:
            return
        clock.now_s = max(clock.now_s, due)


def test_event_fetches_at_once_then_backs_off_while_404():
    clock = FakeClock(start_s=0.0)
    client = FakeClient(clock, available_at_s=0.3)
    tracker, done = _tracker(client, clock)
    _register(tracker)
    clock.now_s = 0.01
    tracker.on_events([ActivationEvent("a" * 32, 0, "alice")])
    _drive(tracker, clock, 10.0)
    assert client.fetches == [0.01, 0.06, 0.16, 0.36]  # backoff 0.05, 0.1, 0.2
    assert done == [("a" * 32, {"activationId": "a" * 32}, None)]
    assert tracker.pending_count == 0 and tracker.events_matched == 1


def test_backoff_is_capped_at_poll_interval():
    clock = FakeClock(start_s=0.0)
    client = FakeClient(clock, available_at_s=10.0)
    tracker, done = _tracker(client, clock)
    _register(tracker)
    tracker.on_events([ActivationEvent("a" * 32, 0, None)])
    _drive(tracker, clock, 20.0)
    gaps = [round(b - a, 3) for a, b in zip(client.fetches, client.fetches[1:])]
    assert gaps[:6] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6] and set(gaps[6:]) == {2.0}
    assert len(done) == 1


def test_without_event_polls_after_event_timeout_every_poll_interval():
    clock = FakeClock(start_s=0.0)
    client = FakeClient(clock, available_at_s=35.0)
    tracker, done = _tracker(client, clock)
    _register(tracker, sent_s=0.0)
    _drive(tracker, clock, 100.0)
    assert client.fetches == [30.0, 32.0, 34.0, 36.0]
    assert done[0][1] is not None


def test_event_before_registration_is_kept_for_the_late_invoke_answer():
    clock = FakeClock(start_s=0.0)
    client = FakeClient(clock, available_at_s=0.0)
    tracker, done = _tracker(client, clock)
    tracker.on_events([ActivationEvent("b" * 32, 0, None)])  # the action finished before the 202 came back
    tracker.on_events([ActivationEvent("c" * 32, 0, None)])  # another loader's activation: stays unmatched
    clock.now_s = 0.002
    _register(tracker, "b" * 32, sent_s=0.0)
    _drive(tracker, clock, 1.0)
    assert client.fetches == [0.002] and done[0][0] == "b" * 32
    assert tracker.events_matched == 1


def test_unmatched_early_events_are_forgotten_in_arrival_order_after_they_are_kept():
    """An early event is kept EARLY_EVENT_KEEP_S for its 202, then forgotten; the older ones go
    first and a fresher one stays (the sweep stops at the first fresh one)."""
    from loader.completion.tracker import EARLY_EVENT_KEEP_S
    clock = FakeClock(start_s=0.0)
    client = FakeClient(clock, available_at_s=0.0)
    tracker, done = _tracker(client, clock)
    for name in "cde":
        tracker.on_events([ActivationEvent(name * 32, 0, None)])
    clock.now_s = 60.0
    tracker.on_events([ActivationEvent("f" * 32, 0, None)])
    clock.now_s = EARLY_EVENT_KEEP_S + 1.0
    tracker.tick()
    _register(tracker, "c" * 32, sent_s=clock.now_s)   # its event is gone: it waits for the poll
    _register(tracker, "f" * 32, sent_s=clock.now_s)   # its event is still kept: fetched at once
    _drive(tracker, clock, clock.now_s + 1.0)
    assert [activation_id for activation_id, _, _ in done] == ["f" * 32]
    assert tracker.events_matched == 1


def test_lost_after_final_deadline_with_reason():
    clock = FakeClock(start_s=0.0)
    client = FakeClient(clock, error=True)
    settings = TrackerSettings(event_timeout_s=1.0, poll_interval_s=2.0, record_retry_s=0.05, final_deadline_s=6.0,
                               fetches_in_flight=1)
    tracker, done = _tracker(client, clock, settings)
    _register(tracker)
    _drive(tracker, clock, 100.0)
    assert client.fetches == [1.0, 3.0, 5.0, 6.0]
    ((activation_id, record, reason),) = done
    assert record is None
    assert reason == ("no activation record 6 s after sending (user event not received; 4 fetches; "
                      "last answer: ConnectionError: refused)")
    assert tracker.lost == 1 and tracker.pending_count == 0


def test_give_up_ends_every_pending_activation_once():
    clock = FakeClock(start_s=0.0)
    tracker, done = _tracker(FakeClient(clock), clock)
    for n in range(3):
        _register(tracker, f"{n:032x}")
    assert tracker.give_up("stopped") == 3
    assert sorted(d[0] for d in done) == [f"{n:032x}" for n in range(3)] and {d[2] for d in done} == {"stopped"}
    assert tracker.tick() is None and len(done) == 3
