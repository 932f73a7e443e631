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

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        action = self.path.split("/actions/")[1].split("?")[0]
        if action == "slow":
            time.sleep(1.5)
        status, payload = (429, {"error": "too many"}) if action == "throttle" else \
            (202, {"activationId": f"id-{body['object']}"})
        data = json.dumps(payload).encode()
        self.send_response(status)
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


@pytest.fixture
def platform():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Platform)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _invocation(seq, action="ok", user="alice"):
    return PlannedInvocation("alice-x", seq, user, action, seq * 1000, f"{seq}.jpg",
                             (("object", f"{seq}.jpg"), ("incont", "in")))


def _pool(apihost, processes=2, threads=2, stopping=None):
    recorder, tracker = FakeRecorder(), FakeTracker()
    start_s = time.monotonic()
    pool = ProcessInvokerPool(processes, threads, ClientSettings(apihost, timeout_s=10.0), {"alice": ALICE},
                              recorder, tracker, clock=RealClock(spin_s=0.0), start_s=lambda: start_s,
                              stopping=stopping or threading.Event())
    return pool, recorder, tracker, start_s


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
        for item in items:
            pool.submit(Dispatch(item, 0))
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
    pool, recorder, tracker, _ = _pool(platform, processes=1, threads=2)
    pool.start()
    try:
        pool.submit(Dispatch(_invocation(0, "slow"), 0))
        pool.submit(Dispatch(_invocation(1, "slow"), 0))
        time.sleep(0.3)  # both are in the sender's hands
        os.kill(pool.process_ids[0], signal.SIGKILL)
        _wait(lambda: recorder.answered() == 2)
        pool.submit(Dispatch(_invocation(2), 0))
        _wait(lambda: recorder.answered() == 3)
    finally:
        pool.stop()
    reasons = {invocation.seq: outcome.reason for invocation, _, outcome in recorder.sent_rows}
    assert {outcome.status for _, _, outcome in recorder.sent_rows} == {InvokeStatus.CONNECTION_ERROR}
    assert sorted([reasons[0], reasons[1]]) == [
        f"sender process 0 (thread {n}) exited (code -9) before reporting this invocation; "
        "it may or may not have reached the platform" for n in (0, 1)]
    assert reasons[2] == "no sender process is running (not sent)"
    assert tracker.registered == []


def test_stopping_cancels_what_the_senders_still_queue(platform):
    stopping = threading.Event()
    pool, recorder, tracker, _ = _pool(platform, processes=1, threads=1, stopping=stopping)
    pool.start()
    pool.submit(Dispatch(_invocation(0, "slow"), 0))
    for seq in (1, 2, 3):  # queued behind the slow one in the only thread's pipe
        pool.submit(Dispatch(_invocation(seq), 0))
    time.sleep(0.3)
    stopping.set()
    pool.submit(Dispatch(_invocation(4), 0))  # after the stop: never handed to a sender
    pool.stop()
    assert [(i.seq, o.status) for i, _, o in recorder.sent_rows] == [(0, InvokeStatus.ACCEPTED)]
    assert sorted((i.seq, reason, dispatched) for i, reason, dispatched in recorder.cancelled_rows) == \
        [(seq, CANCEL_REASON, True) for seq in (1, 2, 3, 4)]
    assert [r[2] for r in tracker.registered] == ["id-0.jpg"]


def test_needs_the_real_clock(platform):
    with pytest.raises(ValueError, match="sender processes need the real clock"):
        ProcessInvokerPool(1, 1, ClientSettings(platform), {}, FakeRecorder(), FakeTracker(), clock=FakeClock(),
                           start_s=lambda: 0.0, stopping=threading.Event())
