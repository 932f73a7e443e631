"""The record-fetch process (loader/completion/fetch_process.py) against a real HTTP server.

Records found, 404s and errors come back as the tracker's outcomes; every fetch handed over is
in flight at once (no thread per fetch); a server that closes its idle keep-alive connections
costs nothing; a server that never answers gives an error after the client's timeout; a dead
child fails what it held and the next fetch starts another; closing waits for what is in flight.
The tracker's own rules are tested with a fake fetcher in test_injector_tracker.py; the loader's
runs fetch through this process in test_injector_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from loader.completion.fetch_process import FetchProcess
from loader.platform.client import ClientSettings, FetchStatus
from loader.platform.keys import UserKey

pytestmark = pytest.mark.timeout(120)
ALICE = UserKey("alice", "23bc46b1-71f6-4ed5-8c54-816aa4f8c502", "k" * 64)


class Records(BaseHTTPRequestHandler):
    """``/activations/ok-*`` → the record; ``missing-*`` → 404; ``broken-*`` → 500; ``slow-*`` → the
    record after ``Records.delay_s``; ``hang-*`` → no answer.  Counts requests in flight and
    connections; ``Records.close_after`` answers then closes the connection (an idle timeout)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    lock = threading.Lock()
    in_flight = peak = connections = 0
    delay_s = 0.5
    close_after = False
    release = threading.Event()

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with Records.lock:
            Records.connections += 1

    def do_GET(self):
        assert self.headers["Authorization"].startswith("Basic ")
        activation_id = self.path.rsplit("/", 1)[1]
        with Records.lock:
            Records.in_flight += 1
            Records.peak = max(Records.peak, Records.in_flight)
        try:
            if activation_id.startswith("slow-"):
                time.sleep(Records.delay_s)
            if activation_id.startswith("hang-"):
                Records.release.wait(30)
                return
            if activation_id.startswith("missing-"):
                status, payload = 404, {"error": "The requested resource does not exist."}
            elif activation_id.startswith("broken-"):
                status, payload = 500, {"error": "boom"}
            else:
                status, payload = 200, {"activationId": activation_id, "response": {"status": "success"}}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if Records.close_after:
                self.close_connection = True
        finally:
            with Records.lock:
                Records.in_flight -= 1


class Server(ThreadingHTTPServer):
    request_queue_size = 128   # the fetches connect at once
    daemon_threads = True


@pytest.fixture
def apihost():
    Records.in_flight = Records.peak = Records.connections = 0
    Records.close_after = False
    Records.release.clear()
    server = Server(("127.0.0.1", 0), Records)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Records.release.set()
    server.shutdown()
    server.server_close()


class Outcomes:
    def __init__(self):
        self.lock = threading.Lock()
        self.done: dict[str, tuple] = {}
        self.arrived = threading.Condition(self.lock)
        self.threads: set[str] = set()

    def __call__(self, answers):
        with self.arrived:
            for pending, outcome in answers:
                self.done[pending.activation_id] = (outcome.status, outcome.record, outcome.http_status,
                                                    outcome.reason)
            self.threads.add(threading.current_thread().name)
            self.arrived.notify_all()

    def wait(self, count: int, timeout_s: float = 30.0) -> dict:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.done) >= count, timeout_s), self.done
            return dict(self.done)


def pendings(*ids: str) -> list:
    return [SimpleNamespace(user=ALICE, activation_id=activation_id) for activation_id in ids]


def test_found_missing_and_failing_records_come_back_as_outcomes(apihost):
    fetcher = FetchProcess(ClientSettings(apihost, timeout_s=5.0), 8)
    outcomes = Outcomes()
    try:
        fetcher.fetch(pendings("ok-1", "missing-1", "broken-1"), outcomes)
        done = outcomes.wait(3)
    finally:
        fetcher.close()
    assert done["ok-1"] == (FetchStatus.FOUND, {"activationId": "ok-1", "response": {"status": "success"}}, 200, None)
    assert done["missing-1"] == (FetchStatus.NOT_FOUND, None, 404,
                                 "HTTP 404: The requested resource does not exist.")
    assert done["broken-1"] == (FetchStatus.ERROR, None, 500, "HTTP 500: boom")
    assert outcomes.threads == {"record-fetch-answers"}   # not the tracker's thread
    assert fetcher.stats["fetched"] == 3


def test_every_fetch_handed_over_is_in_flight_at_once_up_to_the_cap(apihost):
    Records.delay_s = 0.5
    fetcher = FetchProcess(ClientSettings(apihost, timeout_s=5.0), 40)
    outcomes = Outcomes()
    try:
        began = time.monotonic()
        fetcher.fetch(pendings(*[f"slow-{n}" for n in range(60)]), outcomes)
        done = outcomes.wait(60)
        took_s = time.monotonic() - began
    finally:
        fetcher.close()
    assert {status for status, *_ in done.values()} == {FetchStatus.FOUND}
    assert 30 <= Records.peak <= 40              # the cap, not a thread count (the server's count lags a little)
    assert took_s < 1.6                          # two waves of 0.5 s, not 60 fetches one after another
    assert fetcher.stats["held"] == 20 and fetcher.stats["peak_in_flight"] == 40


def test_a_server_closing_kept_alive_connections_costs_nothing(apihost):
    Records.close_after = True
    fetcher = FetchProcess(ClientSettings(apihost, timeout_s=5.0), 1)
    outcomes = Outcomes()
    try:
        for n in range(5):                       # one after another, each on a connection closed after it
            fetcher.fetch(pendings(f"ok-{n}"), outcomes)
            outcomes.wait(n + 1)
    finally:
        fetcher.close()
    assert {status for status, *_ in outcomes.done.values()} == {FetchStatus.FOUND}
    assert Records.connections == 5


def test_a_server_that_never_answers_gives_an_error_after_the_timeout(apihost):
    fetcher = FetchProcess(ClientSettings(apihost, timeout_s=0.5), 4)
    outcomes = Outcomes()
    try:
        began = time.monotonic()
        fetcher.fetch(pendings("hang-1", "ok-1"), outcomes)
        done = outcomes.wait(2)
        assert 0.5 <= time.monotonic() - began < 3.0
    finally:
        fetcher.close()
    assert done["ok-1"][0] is FetchStatus.FOUND
    assert done["hang-1"] == (FetchStatus.ERROR, None, None, "TimeoutError: no answer within 0.5 s")


def test_a_dead_child_fails_what_it_held_and_the_next_fetch_starts_another(apihost):
    fetcher = FetchProcess(ClientSettings(apihost, timeout_s=10.0), 4)
    outcomes = Outcomes()
    try:
        fetcher.fetch(pendings("hang-1"), outcomes)
        deadline = time.monotonic() + 10
        while Records.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        first = fetcher.process_id
        assert first is not None
        os.kill(first, signal.SIGKILL)
        done = outcomes.wait(1)
        assert done["hang-1"][0] is FetchStatus.ERROR and "record-fetch process is gone" in done["hang-1"][3]
        fetcher.fetch(pendings("ok-1"), outcomes)
        assert outcomes.wait(2)["ok-1"][0] is FetchStatus.FOUND
        assert fetcher.restarts == 1 and fetcher.process_id != first
    finally:
        fetcher.close()


def test_close_waits_for_the_fetches_in_flight_then_refuses_more(apihost):
    Records.delay_s = 0.3
    fetcher = FetchProcess(ClientSettings(apihost, timeout_s=5.0), 4)
    outcomes = Outcomes()
    fetcher.fetch(pendings("slow-1", "slow-2"), outcomes)
    fetcher.close()
    assert {k: v[0] for k, v in outcomes.done.items()} == {"slow-1": FetchStatus.FOUND, "slow-2": FetchStatus.FOUND}
    fetcher.fetch(pendings("ok-after"), outcomes)
    assert outcomes.done["ok-after"][0] is FetchStatus.ERROR and "stopped" in outcomes.done["ok-after"][3]
