"""Sender processes (loader/sending/processes.py) against a real HTTP server: answers, dead senders, stops.

The recorder and tracker are fakes that note what the pool reports (this is the unit test of
the pool); the end-to-end runs with sender processes are in test_injector_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from faasload.clock import FakeClock, RealClock
from loader.plan import PlannedInvocation
from loader.platform.client import ClientSettings, InvokeStatus
from loader.platform.keys import UserKey
from loader.scheduler import Dispatch
from loader.sending.common import CANCEL_REASON
from loader.sending.processes import ProcessInvokerPool

pytestmark = pytest.mark.timeout(120)
ALICE = UserKey("alice", "23bc46b1-71f6-4ed5-8c54-816aa4f8c502", "k" * 64)


class Platform(BaseHTTPRequestHandler):
    """``ok`` → 202 with an id naming the request's object; ``throttle`` → 429; ``slow`` → 202 after 1.5 s."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    received: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        action = self.path.split("/actions/")[1].split("?")[0]
        if action == "slow":
            time.sleep(1.5)
        with Platform.lock:
            Platform.received[action] = Platform.received.get(action, 0) + 1
        headers = {}
        if action == "throttle":
            status, payload = 429, {"error": "too many"}
        elif action == "fail500":
            status, payload = 500, {"error": "broken"}
        elif action == "busy503":
            status, payload, headers = 503, {"error": "busy"}, {"Retry-After": "0"}
        else:
            status, payload = 202, {"activationId": f"id-{body['object']}"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeRecorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent_rows, self.cancelled_rows, self.dispatched_count = [], [], 0

    def dispatched(self):
        self.dispatched_count += 1

    def key(self, invocation):
        return (invocation.trace_name, invocation.seq)

    def sent(self, invocation, sent_offset_us, outcome):
        with self.lock:
            self.sent_rows.append((invocation, sent_offset_us, outcome))

    def sent_batch(self, answers):
        for invocation, sent_offset_us, outcome in answers:
            self.sent(invocation, sent_offset_us, outcome)

    def cancelled(self, invocation, reason, *, dispatched):
        with self.lock:
            self.cancelled_rows.append((invocation, reason, dispatched))

    def answered(self):
        return len(self.sent_rows) + len(self.cancelled_rows)


class FakeTracker:
    def __init__(self):
        self.registered = []

    def register(self, invocation, key, user, activation_id, sent_s):
        self.registered.append((key, user, activation_id, sent_s))


class _Server(ThreadingHTTPServer):
    request_queue_size = 128   # many connections at once (the default backlog of 5 would drop SYNs)
    daemon_threads = True


@pytest.fixture
def platform():
    Platform.received = {}
    server = _Server(("127.0.0.1", 0), Platform)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _invocation(seq, action="ok", user="alice"):
    return PlannedInvocation("alice-x", seq, user, action, seq * 1000, f"{seq}.jpg",
                             (("object", f"{seq}.jpg"), ("incont", "in")))


def _pool(apihost, processes=2, max_in_flight=1000, stopping=None, retries=0, timeout_s=10.0):
    recorder, tracker = FakeRecorder(), FakeTracker()
    start_s = time.monotonic()
    settings = ClientSettings(apihost, timeout_s=timeout_s, invoke_retries=retries, retry_backoff_s=0.01)
    pool = ProcessInvokerPool(processes, settings, {"alice": ALICE}, recorder, tracker, clock=RealClock(spin_s=0.0),
                              start_s=lambda: start_s, stopping=stopping or threading.Event(),
                              max_in_flight=max_in_flight)
    return pool, recorder, tracker, start_s


def _submit(pool, *invocations):
    for invocation in invocations:
        pool.submit(Dispatch(invocation, 0))
    pool.flush()


def _wait(condition, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_answers_are_recorded_and_accepted_activations_tracked(platform):
    pool, recorder, tracker, start_s = _pool(platform)
    pool.start()
    try:
        before_s = time.monotonic()
        items = [_invocation(n) for n in range(20)] + [_invocation(20, "throttle"), _invocation(21, user="nobody")]
        _submit(pool, *items)
        _wait(lambda: recorder.answered() == len(items))
    finally:
        pool.stop()
    assert recorder.dispatched_count == 22 and recorder.cancelled_rows == []
    by_seq = {invocation.seq: (offset_us, outcome) for invocation, offset_us, outcome in recorder.sent_rows}
    assert sorted(by_seq) == list(range(22))
    for seq in range(20):
        offset_us, outcome = by_seq[seq]
        assert (outcome.status, outcome.activation_id, outcome.http_status) == (InvokeStatus.ACCEPTED, f"id-{seq}.jpg", 202)
        assert (before_s - start_s) * 1e6 <= offset_us <= (time.monotonic() - start_s) * 1e6
    assert (by_seq[20][1].status, by_seq[20][1].reason) == (InvokeStatus.THROTTLED, "HTTP 429: too many")
    assert (by_seq[21][1].status, by_seq[21][1].reason) == (InvokeStatus.HTTP_ERROR, "no key for user 'nobody' (not sent)")
    assert sorted(r[2] for r in tracker.registered) == sorted(f"id-{n}.jpg" for n in range(20))
    assert all(r[1] == ALICE and r[3] >= before_s for r in tracker.registered)
    assert all(r[0] == ("alice-x", int(r[2][3:-4])) for r in tracker.registered)


def test_a_dead_sender_loses_nothing_silently(platform):
    pool, recorder, tracker, _ = _pool(platform, processes=1)
    pool.start()
    try:
        _submit(pool, _invocation(0, "slow"), _invocation(1, "slow"))
        time.sleep(0.3)  # both are in the sender's hands
        os.kill(pool.process_ids[0], signal.SIGKILL)
        _wait(lambda: recorder.answered() == 2)
        _submit(pool, _invocation(2))
        _wait(lambda: recorder.answered() == 3)
    finally:
        pool.stop()
    reasons = {invocation.seq: outcome.reason for invocation, _, outcome in recorder.sent_rows}
    assert {outcome.status for _, _, outcome in recorder.sent_rows} == {InvokeStatus.CONNECTION_ERROR}
    assert [reasons[0], reasons[1]] == [
        "sender process 0 exited (code -9) before reporting this invocation; "
        "it may or may not have reached the platform"] * 2
    assert reasons[2] == "no sender process is running (not sent)"
    assert tracker.registered == []


def test_stopping_cancels_what_the_senders_still_hold_back(platform):
    stopping = threading.Event()
    pool, recorder, tracker, _ = _pool(platform, processes=1, max_in_flight=1, stopping=stopping)
    pool.start()
    _submit(pool, _invocation(0, "slow"))
    _submit(pool, *(_invocation(seq) for seq in (1, 2, 3)))  # held back by the cap of 1 in flight
    time.sleep(0.3)
    stopping.set()
    _submit(pool, _invocation(4))  # after the stop: never handed to a sender
    pool.stop()
    assert [(i.seq, o.status) for i, _, o in recorder.sent_rows] == [(0, InvokeStatus.ACCEPTED)]
    assert sorted((i.seq, reason, dispatched) for i, reason, dispatched in recorder.cancelled_rows) == \
        [(seq, CANCEL_REASON, True) for seq in (1, 2, 3, 4)]
    assert [r[2] for r in tracker.registered] == ["id-0.jpg"]


def _planned(seq, offset_s):
    return PlannedInvocation("alice-x", seq, "alice", "ok", round(offset_s * 1e6), f"{seq}.jpg",
                             (("object", f"{seq}.jpg"), ("incont", "in")))


def test_invocations_handed_over_early_are_sent_at_their_planned_time(platform):
    """The scheduler hands invocations over up to the pool's lead before their time: each is sent at
    its time, never before, and a normal end still sends what the senders hold for later."""
    pool, recorder, _, start_s = _pool(platform, processes=2)
    assert pool.lead_s > 0
    pool.start()
    now_s = time.monotonic() - start_s
    offsets_s = [now_s + 0.3 + 0.01 * n for n in range(10)]
    _submit(pool, *(_planned(n, offset_s) for n, offset_s in enumerate(offsets_s)))
    pool.stop()   # not stopping: the senders send what they hold at its time, then end
    sent = {invocation.seq: (offset_us, outcome) for invocation, offset_us, outcome in recorder.sent_rows}
    assert sorted(sent) == list(range(10)) and recorder.cancelled_rows == []
    for n, offset_s in enumerate(offsets_s):
        offset_us, outcome = sent[n]
        assert outcome.status is InvokeStatus.ACCEPTED
        assert round(offset_s * 1e6) <= offset_us < round(offset_s * 1e6) + 100_000, (n, offset_s, offset_us)
    assert max(stats["peak_timed"] for stats in pool.sender_stats) >= 1


def test_stopping_cancels_what_the_senders_hold_for_later(platform):
    stopping = threading.Event()
    pool, recorder, tracker, start_s = _pool(platform, processes=1, stopping=stopping)
    pool.start()
    later_s = time.monotonic() - start_s + 30.0
    _submit(pool, *(_planned(n, later_s) for n in range(3)))
    time.sleep(0.2)   # in the sender's hands, waiting for their time
    stopping.set()
    pool.stop()
    assert recorder.sent_rows == [] and tracker.registered == []
    assert sorted((i.seq, reason, dispatched) for i, reason, dispatched in recorder.cancelled_rows) == \
        [(n, CANCEL_REASON, True) for n in range(3)]


def test_needs_the_real_clock(platform):
    with pytest.raises(ValueError, match="sender processes need the real clock"):
        ProcessInvokerPool(1, ClientSettings(platform), {}, FakeRecorder(), FakeTracker(), clock=FakeClock(),
                           start_s=lambda: 0.0, stopping=threading.Event())


def test_a_slow_platform_delays_no_later_send(platform):
    """An open loop: requests waiting on slow answers hold no sender back (no thread per request)."""
    pool, recorder, _, start_s = _pool(platform, processes=1)
    pool.start()
    try:
        _submit(pool, *(_invocation(seq, "slow") for seq in range(30)))
        time.sleep(0.2)
        submitted_s = time.monotonic()
        _submit(pool, *(_invocation(seq) for seq in range(30, 40)))
        _wait(lambda: len([r for r in recorder.sent_rows if r[0].seq >= 30]) == 10)
        fast_done_s = time.monotonic()
        _wait(lambda: recorder.answered() == 40)
    finally:
        pool.stop()
    assert fast_done_s - submitted_s < 1.0, "the fast invocations waited for the slow answers"
    sent = {i.seq: offset_us for i, offset_us, _ in recorder.sent_rows}
    assert all(sent[seq] <= (submitted_s - start_s + 0.5) * 1e6 for seq in range(30, 40))
    assert all(o.status is InvokeStatus.ACCEPTED for _, _, o in recorder.sent_rows)
    assert pool.sender_stats[0]["peak_in_flight"] >= 31


def test_the_in_flight_cap_holds_back_and_sends_later(platform):
    pool, recorder, _, _ = _pool(platform, processes=1, max_in_flight=2)
    pool.start()
    try:
        _submit(pool, *(_invocation(seq, "slow") for seq in range(4)))
        _wait(lambda: recorder.answered() == 4)
    finally:
        pool.stop()
    assert sorted(i.seq for i, _, o in recorder.sent_rows if o.status is InvokeStatus.ACCEPTED) == [0, 1, 2, 3]
    stats = pool.sender_stats[0]
    assert (stats["peak_in_flight"], stats["held"]) == (2, 2)
    offsets = sorted(offset_us for _, offset_us, _ in recorder.sent_rows)
    assert offsets[2] - offsets[1] >= 1_000_000, "the held-back invocations went out before a place was free"


def test_an_invoke_without_an_answer_in_time_fails_and_frees_its_place(platform):
    pool, recorder, _, _ = _pool(platform, processes=1, max_in_flight=1, timeout_s=0.3)
    pool.start()
    try:
        _submit(pool, _invocation(0, "slow"), _invocation(1))   # 1 waits for 0's place
        _wait(lambda: recorder.answered() == 2)
    finally:
        pool.stop()
    rows = {i.seq: (offset_us, o) for i, offset_us, o in recorder.sent_rows}
    assert rows[0][1].status is InvokeStatus.CONNECTION_ERROR
    assert rows[0][1].reason == "TimeoutError: no answer within 0.3 s"
    assert rows[1][1].status is InvokeStatus.ACCEPTED
    assert rows[1][0] - rows[0][0] >= 300_000, "the held invocation went out before the timeout freed a place"
    assert pool.sender_stats[0]["held"] == 1


def test_retries_only_what_provably_did_not_run(platform):
    pool, recorder, _, _ = _pool(platform, processes=1, retries=2)
    pool.start()
    try:
        _submit(pool, _invocation(0, "throttle"), _invocation(1, "fail500"), _invocation(2, "busy503"))
        _wait(lambda: recorder.answered() == 3)
    finally:
        pool.stop()
    outcomes = {i.seq: o for i, _, o in recorder.sent_rows}
    assert (outcomes[0].status, outcomes[0].attempts) == (InvokeStatus.THROTTLED, 3)
    assert (outcomes[1].status, outcomes[1].http_status, outcomes[1].attempts) == (InvokeStatus.HTTP_ERROR, 500, 1)
    assert (outcomes[2].http_status, outcomes[2].attempts) == (503, 3)
    assert Platform.received == {"throttle": 3, "fail500": 1, "busy503": 3}


def test_a_refused_connection_is_retried_then_recorded():
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool, recorder, _, _ = _pool(f"http://127.0.0.1:{port}", processes=1, retries=1)
    pool.start()
    try:
        _submit(pool, _invocation(0))
        _wait(lambda: recorder.answered() == 1)
    finally:
        pool.stop()
    (_, _, outcome), = recorder.sent_rows
    assert (outcome.status, outcome.attempts) == (InvokeStatus.CONNECTION_ERROR, 2)
    assert "ConnectionRefusedError" in outcome.reason


def test_answer_frames_are_read_in_chunks_as_a_connection_sends_them():
    """The results thread reads the answer pipe itself (several messages per read, a message over several)."""
    import multiprocessing
    import pickle

    from loader.child_pipes import Frames

    ours, theirs = multiprocessing.get_context("spawn").Pipe(duplex=True)
    frames = Frames(ours.fileno())
    sent = [[(1, 2.5, "accepted", 1, "a" * 32, 202, None)], ("stats", {"held": 0}), [], list(range(30_000))]
    theirs.send(sent[0])
    theirs.send_bytes(pickle.dumps(sent[1]))
    theirs.send(sent[2])
    got = []
    while len(got) < 3:
        got += frames.read()
    writer = threading.Thread(target=theirs.send, args=(sent[3],))  # ~150 KB: more than one read
    writer.start()
    while len(got) < 4:
        got += frames.read()
    writer.join()
    theirs.close()
    assert got == sent and frames.read() is None and not frames.buffer


@pytest.mark.parametrize("timerfd", [True, False])
def test_the_sender_loop_waits_for_the_planned_time(platform, monkeypatch, timerfd):
    """Inside a sender, on its loop (uvloop's): a request handed over early goes out at its time,
    on the timerfd or, where there is none, on the loop's own timer."""
    import asyncio

    from loader import child_loop
    from loader.sending import event_loop

    if not timerfd:
        def no_timerfd(*args):
            raise OSError("timerfd_create: not here")
        monkeypatch.setattr(event_loop, "DeadlineTimer", no_timerfd)
    answers = []

    async def run():
        invoker = event_loop.LoopInvoker(ClientSettings(platform, timeout_s=10.0), {"alice": ALICE},
                                         lambda ticket, sent_s, outcome: answers.append((ticket, sent_s, outcome)),
                                         max_in_flight=10)
        assert (invoker._timer is not None) is timerfd
        planned_s = [time.monotonic() + 0.2, time.monotonic() + 0.1]
        for ticket, at_s in enumerate(planned_s):
            invoker.submit(ticket, "alice", "ok", (("object", f"{ticket}.jpg"),), at_s)
        invoker.submit(2, "alice", "ok", (("object", "2.jpg"),), time.monotonic() - 1.0)   # late: at once
        while len(answers) < 3:
            await asyncio.sleep(0.01)
        invoker.close()
        return planned_s

    planned_s = child_loop.run(run())
    sent = {ticket: sent_s for ticket, sent_s, _ in answers}
    assert [ticket for ticket, _, _ in answers][0] == 2
    for ticket, at_s in enumerate(planned_s):
        assert at_s <= sent[ticket] < at_s + 0.1, (ticket, sent[ticket] - at_s)
    assert all(outcome.status is InvokeStatus.ACCEPTED for _, _, outcome in answers)
