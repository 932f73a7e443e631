"""Unit tests of localwhisk modules (one module each, fakes only where a seam is small)."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from faasload.config import defaults
from localwhisk import auth, events, limits, users
from localwhisk.activations import ActivationRecord, ActivationResponse, StatusCode
from localwhisk.backends import SENTINEL, LogBuffer, LogLine
from localwhisk.config import LocalWhiskConfig
from localwhisk.entities import build_action, is_binary_code
from localwhisk.errors import ApiError
from localwhisk.invoker import run_response
from localwhisk.platform import container_name
from localwhisk.pool import ContainerPool
from localwhisk.runtime_client import CallOutcome, RuntimeAnswer

ROOT = Path(__file__).resolve().parent.parent
CFG = defaults(LocalWhiskConfig)


# --------------------------------------------------------------------------- users and auth

def test_user_create_rules_and_auth(tmp_path):
    store = users.UserStore(tmp_path)
    with pytest.raises(users.UserError, match="Subject name must be at least 5 characters"):
        store.create("abc")
    identity = store.create("alice")
    assert len(identity.key) == 64 and identity.namespace == "alice"
    with pytest.raises(users.UserError, match="Namespace already exists"):
        store.create("alice")
    header = "Basic " + base64.b64encode(identity.authkey.encode()).decode()
    assert auth.authenticate(header, store).identity == identity
    short = "Basic " + base64.b64encode(identity.authkey[:-1].encode()).decode()
    assert auth.authenticate(short, store).status is auth.AuthStatus.INVALID
    assert auth.authenticate(None, store).status is auth.AuthStatus.MISSING
    assert auth.authenticate("Basic !!!", store).status is auth.AuthStatus.INVALID
    store.delete("alice")
    assert auth.authenticate(header, store).status is auth.AuthStatus.INVALID


def test_user_cli_and_guest_seed(tmp_path):
    config = tmp_path / "lw.yml"
    config.write_text(f"state: {{dir: {tmp_path / 'state'}}}\n")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "localwhisk", "--config", str(config), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    created = run("user", "create", "researcher")
    assert created.returncode == 0, created.stderr
    uuid_text, key = created.stdout.strip().split(":")
    assert len(key) == 64 and len(uuid_text) == 36
    listed = run("user", "list")
    assert f"researcher\tresearcher\t{uuid_text}:{key}" in listed.stdout
    refused = run("user", "create", "abcd")
    assert refused.returncode == 1 and "at least 5 characters" in refused.stderr
    assert run("limits", "set", "researcher", "--invocationsPerMinute", "7").returncode == 0
    assert run("limits", "get", "researcher").stdout.strip() == '{"invocationsPerMinute": 7}'
    assert run("user", "delete", "researcher").returncode == 0
    assert "researcher" not in run("user", "list").stdout
    store = users.UserStore(tmp_path / "state")
    store.seed_guest()
    assert store.identify(users.GUEST_UUID, users.GUEST_KEY).namespace == "guest"


# --------------------------------------------------------------------------- throttles

def test_rate_throttler_fixed_minute_counts_rejections():
    throttler = limits.RateThrottler()
    minute = 28_000_000 * 60000
    assert [throttler.check("ns", 2, minute + i) for i in range(2)] == [None, None]
    assert throttler.check("ns", 2, minute + 59_999) == "Too many requests in the last minute (count: 3, allowed: 2)."
    assert throttler.check("ns", 2, minute + 59_999) == "Too many requests in the last minute (count: 4, allowed: 2)."
    assert throttler.check("other", 2, minute + 1) is None
    assert throttler.check("ns", 2, minute + 60_000) is None  # a new calendar minute


def test_concurrency_throttler():
    throttler = limits.ConcurrencyThrottler()
    assert throttler.acquire("ns", 1) is None
    assert throttler.acquire("ns", 1) == "Too many concurrent requests in flight (count: 1, allowed: 1)."
    throttler.release("ns")
    assert throttler.acquire("ns", 1) is None


# --------------------------------------------------------------------------- entities

def test_build_action_defaults_and_update():
    body = {"exec": {"kind": "python:3.11", "code": "def main(a): return a"}}
    action = build_action("ns", "act", body, None, overwrite=False, limits=CFG.limits, runtimes=CFG.runtimes,
                          now_ms=1)
    assert action.version == "0.0.1" and action.limits.memory_mb == 256 and action.limits.timeout_ms == 60000
    assert dict(action.annotations) == {"exec": "python:3.11", "provide-api-key": False}
    updated = build_action("ns", "act", {"annotations": [{"key": "provide-api-key", "value": True}]}, action,
                           overwrite=True, limits=CFG.limits, runtimes=CFG.runtimes, now_ms=2)
    assert updated.version == "0.0.2" and updated.annotation("provide-api-key") is True and updated.code == action.code
    with pytest.raises(ApiError, match="resource already exists"):
        build_action("ns", "act", body, action, overwrite=False, limits=CFG.limits, runtimes=CFG.runtimes, now_ms=3)


def test_binary_code_detection():
    assert is_binary_code(base64.b64encode(b"PK\x03\x04 zip bytes").decode())
    assert not is_binary_code("def main(args):\n    return {}\n")
    assert not is_binary_code("")


# --------------------------------------------------------------------------- responses and events

@pytest.mark.parametrize("status,body,code,result", [
    (200, '{"a": 1}\n', StatusCode.SUCCESS, {"a": 1}),
    (200, '{"error": "x"}\n', StatusCode.APPLICATION_ERROR, {"error": "x"}),
    (200, '[1]\n', StatusCode.SUCCESS, [1]),
    (502, '{"error": "The action did not return a dictionary or array."}\n', StatusCode.DEVELOPER_ERROR,
     {"error": "The action did not return a dictionary or array."}),
    (200, 'not json', StatusCode.DEVELOPER_ERROR,
     {"error": "The action did not produce a valid JSON response: not json"}),
])
def test_run_response_mapping(status, body, code, result):
    response = run_response(RuntimeAnswer(CallOutcome.ANSWERED, status, body), 1024)
    assert (response.status_code, response.result, response.size) == (code, result, len(body))


def test_oversized_result_is_application_error():
    body = '{"a": "' + "x" * 100 + '"}\n'
    response = run_response(RuntimeAnswer(CallOutcome.ANSWERED, 200, body), 50)
    assert response.status_code is StatusCode.APPLICATION_ERROR
    assert response.result == {"error": f"The action produced a response that exceeded the allowed length: "
                                        f"{len(body)} > 50 bytes."}


def _record(result, annotations) -> ActivationRecord:
    return ActivationRecord("a" * 32, "ns", "act", "subj", "0.0.1", 1000, 1450,
                            ActivationResponse(StatusCode.SUCCESS, result, 12), (), tuple(annotations))


def test_activation_event_body():
    base = [("path", "ns/act"), ("kind", "python:3.11"), ("limits", {"memory": 256}), ("waitTime", 5)]
    body = events.activation_body(_record({"statusCode": 404}, base))
    assert body == {"name": "ns/act", "activationId": "a" * 32, "statusCode": 0, "duration": 450, "waitTime": 5,
                    "initTime": 0, "kind": "python:3.11", "conductor": False, "memory": 256, "size": 12,
                    "userDefinedStatusCode": 404}
    assert list(body)[:10] == ["name", "activationId", "statusCode", "duration", "waitTime", "initTime", "kind",
                               "conductor", "memory", "size"]
    assert events.activation_body(_record({}, base[1:])) is None  # no path: no event
    assert events.user_defined_status_code({"error": {"statusCode": "x"}}) == 400


def test_record_rest_shape_has_no_status_code():
    record = _record({"ok": 1}, [("path", "ns/act")])
    assert record.to_json()["response"] == {"status": "success", "success": True, "result": {"ok": 1}, "size": 12}
    assert record.summary_json()["statusCode"] == 0 and "response" not in record.summary_json()


# --------------------------------------------------------------------------- containers

def test_container_names_as_openwhisk():
    assert container_name(0, 1, "guest", "hello") == "wsk0_1_guest_hello"
    assert container_name(3, 12, "user-im.age", "re_size-v2") == "wsk3_12_userimage_re_sizev2"


def test_log_buffer_splits_at_sentinels():
    buffer = LogBuffer()
    buffer.feed("stdout", "one", "2026-01-01T00:00:00.000000001Z")
    buffer.feed("stderr", "two", "2026-01-01T00:00:00.000000002Z")
    for stream in ("stdout", "stderr"):
        buffer.feed(stream, SENTINEL)
    buffer.feed("stdout", "next", "2026-01-01T00:00:01.000000000Z")
    lines, complete = buffer.collect(1.0)
    assert complete and [line.text for line in lines] == ["one", "two"]
    assert lines[0].formatted() == "2026-01-01T00:00:00.000000001Z stdout: one"
    lines, complete = buffer.collect(0.01)
    assert not complete and [line.text for line in lines] == ["next"]
    assert LogLine("t", "stdout", "  x  ").formatted() == "t".ljust(30) + " stdout: x"


class _FakeContainer:
    def __init__(self, n):
        self.id, self.name, self.port, self.cgroup, self.logs = f"c{n}", f"c{n}", 0, None, LogBuffer()
        self.socket_path = None
        self.paused = self.destroyed = False

    def pause(self):
        self.paused = True

    def resume(self):
        self.paused = False

    def destroy(self):
        self.destroyed = True


class _FakeBackend:
    name, supports_pause = "fake", True

    def __init__(self):
        self.created = []

    def create(self, name, memory_mb, env, network=False):
        self.created.append(_FakeContainer(len(self.created)))
        return self.created[-1]


def test_pool_reuse_pause_evict_and_memory_budget():
    now = [100.0]
    notes = []
    backend = _FakeBackend()
    pool = ContainerPool(backend, capacity_mb=512, keepalive_s=600, pause_grace_s=0.05,
                         notify=lambda action, c: notes.append((action, c.id)), clock=lambda: now[0])
    first, cold = pool.acquire(("a",), 256, lambda: "x", {}, now[0] + 1)
    assert cold and notes == [("run", "c0")]
    pool.release(first, healthy=True)
    now[0] += 0.1
    pool.tick()
    assert first.container.paused and notes[-1] == ("pause", "c0")
    again, cold = pool.acquire(("a",), 256, lambda: "x", {}, now[0] + 1)
    assert again is first and not cold and notes[-1] == ("resume", "c0") and not first.container.paused
    other, cold = pool.acquire(("b",), 256, lambda: "x", {}, now[0] + 1)
    assert cold and pool.used_mb == 512
    pool.release(again, healthy=True)
    third, cold = pool.acquire(("c",), 256, lambda: "x", {}, now[0] + 1)  # evicts the idle "a" container
    assert cold and backend.created[0].destroyed and ("rm", "c0") in notes
    pool.release(other, healthy=False)  # a developer error: destroyed at once
    assert backend.created[1].destroyed and pool.used_mb == 256
    pool.release(third, healthy=True)
    now[0] += 601
    pool.tick()
    assert backend.created[2].destroyed and pool.used_mb == 0


def test_pool_run_arriving_during_a_pause_waits_and_resumes_the_same_container():
    """As OpenWhisk's ContainerProxy: the run waits for the pausing container, then resumes it (warm)."""
    import threading
    import time
    release_pause, pausing = threading.Event(), threading.Event()

    class SlowPause(_FakeContainer):
        def pause(self):
            pausing.set()
            release_pause.wait(5)
            super().pause()

    backend = _FakeBackend()
    backend.create = lambda name, memory_mb, env, network=False: backend.created.append(SlowPause(len(backend.created))) \
        or backend.created[-1]
    now = [100.0]
    pool = ContainerPool(backend, capacity_mb=512, keepalive_s=600, pause_grace_s=0.05, notify=lambda *a: None,
                         clock=lambda: now[0])
    first, _ = pool.acquire(("a",), 256, lambda: "x", {}, now[0] + 1)
    pool.release(first, healthy=True)
    now[0] += 0.1
    ticker = threading.Thread(target=pool.tick)
    ticker.start()
    assert pausing.wait(5)
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(("a",), 256, lambda: "x", {}, now[0] + 5)))
    waiter.start()
    time.sleep(0.1)
    assert not got  # still waiting for the pause, not creating a second container
    release_pause.set()
    ticker.join(5)
    waiter.join(5)
    assert got == [(first, False)] and len(backend.created) == 1 and not first.container.paused


def test_pool_waits_for_memory_then_gives_up():
    backend = _FakeBackend()
    pool = ContainerPool(backend, capacity_mb=256, keepalive_s=600, pause_grace_s=0.05, notify=lambda *a: None)
    import time
    busy, _ = pool.acquire(("a",), 256, lambda: "x", {}, time.monotonic() + 1)
    with pytest.raises(Exception, match="no 256 MB free in the 256 MB container pool"):
        pool.acquire(("b",), 256, lambda: "x", {}, time.monotonic() + 0.05)
    pool.release(busy, healthy=True)
