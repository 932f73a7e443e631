"""Injector under faults, with the real parts: nothing lost, nothing duplicated.

* the Kafka broker stopped for a while mid-run: completions recovered by polling the records;
* the platform answering 429 for a period (a namespace limit set, then removed);
* PostgreSQL restarted mid-run (the writer keeps its batch and retries).
"""

import uuid

import pytest

from faasload import tansu
from tests.injector_support import ECHO_ACTION, Setup, wait_for
from tests.platform_proxy import FORWARD, Answer, AnswerAfterForwarding, PlatformProxy

pytestmark = pytest.mark.timeout(240)


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _assert_complete(setup, planned: int, parameters_per_run: int = 3) -> dict:
    """Exactly one terminal row per planned invocation, parameters once each; the status counts."""
    rows = setup.query("SELECT trace_name, seq, status FROM runs ORDER BY trace_name, seq")
    assert len(rows) == planned
    assert [r[1] for r in rows] == list(range(planned))
    assert not {r[2] for r in rows} & {"planned", "sent"}
    assert setup.query("SELECT count(*) FROM parameters")[0][0] == planned * parameters_per_run
    return dict(setup.query("SELECT status, count(*) FROM runs GROUP BY status"))


def test_broker_stopped_mid_run_completions_recovered_by_polling(tmp_path, localwhisk_factory, database):
    broker = tansu.start(tmp_path / "broker")
    try:
        platform = localwhisk_factory.start(kafka_bootstrap=broker.bootstrap)
        setup = Setup(tmp_path, platform, database, broker.bootstrap)
        user = _name("gina")
        setup.user(user, {"echo": ECHO_ACTION})
        setup.trace(f"{user}-echo", ["0.1\tx.jpg"] * 100)
        setup.write_config(completion={"event_timeout_s": 1.0, "poll_interval_s": 0.3})
        loader = setup.start_loader()
        wait_for(lambda: setup.count_runs("status = 'success'") >= 8, timeout_s=60, what="8 completed runs")
        broker.stop()
        done_at_stop = setup.count_runs("status = 'success'")
        wait_for(lambda: setup.count_runs("status = 'success'") >= done_at_stop + 8, timeout_s=150,
                 what="runs completed while the broker is down")
        broker = tansu.start(tmp_path / "broker", port=broker.port)
        assert loader.wait(120) == 0, loader.stderr_text()[-3000:]
    finally:
        broker.stop()
    assert _assert_complete(setup, 100) == {"success": 100}
    (summary,) = setup.query("SELECT summary FROM experiments")[0]
    assert summary["user_events"]["matched"] < 100  # some completions could only come from polling


def test_platform_answering_429_for_a_period(tmp_path, localwhisk, kafka_broker, database):
    setup = Setup(tmp_path, localwhisk, database, kafka_broker.bootstrap)
    user = _name("henry")
    setup.user(user, {"echo": ECHO_ACTION})
    setup.trace(f"{user}-echo", ["0.1\tx.jpg\tsleep_s:0.3"] * 30)
    setup.write_config()
    limit = localwhisk.admin("limits", "set", user, "--concurrentInvocations", "1")
    assert limit.returncode == 0, limit.stderr
    try:
        loader = setup.start_loader()
        wait_for(lambda: setup.count_runs("status = 'throttled'") >= 3, timeout_s=60, what="throttled runs")
    finally:
        assert localwhisk.admin("limits", "delete", user).returncode == 0
    assert loader.wait(120) == 0, loader.stderr_text()[-3000:]
    statuses = _assert_complete(setup, 30, parameters_per_run=4)
    assert set(statuses) == {"success", "throttled"} and statuses["throttled"] >= 3
    throttled = setup.query("SELECT DISTINCT invoke_http_status, invoke_attempts, activation_id IS NULL, "
                            "status_reason LIKE 'HTTP 429: Too many concurrent requests in flight%' "
                            "FROM runs WHERE status = 'throttled'")
    assert throttled == [(429, 1, True, True)]
    last = setup.query("SELECT status FROM runs ORDER BY seq DESC LIMIT 1")[0][0]
    assert last == "success"  # after the period, invocations go through again
    assert setup.activation_count(user) == statuses["success"]


def test_429_retried_when_configured(tmp_path, localwhisk, kafka_broker, database):
    setup = Setup(tmp_path, localwhisk, database, kafka_broker.bootstrap)
    user = _name("irene")
    setup.user(user, {"echo": ECHO_ACTION})
    setup.trace(f"{user}-echo", ["0.05\tx.jpg\tsleep_s:0.2"] * 6)
    setup.write_config(openwhisk={"invoke_retries": 16, "invoke_retry_backoff_s": 0.05})
    # (full jitter: each wait is uniform below its bound, so retries are cheap but many are needed)
    assert localwhisk.admin("limits", "set", user, "--concurrentInvocations", "1").returncode == 0
    try:
        result = setup.run_loader()
    finally:
        localwhisk.admin("limits", "delete", user)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _assert_complete(setup, 6, parameters_per_run=4) == {"success": 6}
    attempts = [r[0] for r in setup.query("SELECT invoke_attempts FROM runs ORDER BY seq")]
    assert max(attempts) > 1  # some invocations were answered 429 first, and retried
    assert setup.activation_count(user) == 6


def test_postgresql_restarted_mid_run(tmp_path, localwhisk, kafka_broker, database, pg_cluster):
    setup = Setup(tmp_path, localwhisk, database, kafka_broker.bootstrap)
    user = _name("jules")
    setup.user(user, {"echo": ECHO_ACTION})
    setup.trace(f"{user}-echo", ["0.1\tx.jpg"] * 40)
    setup.write_config()
    loader = setup.start_loader()
    try:
        wait_for(lambda: setup.count_runs() >= 5, timeout_s=60, what="5 runs stored")
        pg_cluster.stop(mode="fast")
        sent_at_stop = setup.activation_count(user)
        wait_for(lambda: "database write failed" in loader.stderr_text(), timeout_s=60, what="a failed write")
        wait_for(lambda: setup.activation_count(user) >= sent_at_stop + 5, timeout_s=60,
                 what="invocations while the database is down")
    finally:
        if not pg_cluster.running():
            pg_cluster.start(durable=False)
    assert loader.wait(120) == 0, loader.stderr_text()[-3000:]
    assert _assert_complete(setup, 40) == {"success": 40}
    assert "database reachable again" in loader.stderr_text()


def test_traces_deleted_or_truncated_mid_run_end_alone_and_are_reported(tmp_path, localwhisk, kafka_broker, database):
    """Issue 16 items 1 and 2: each unreadable trace ends with file, line and the invocations it lost; the
    others go on to their end; the loader exits non-zero, the experiment is stored finished with the errors."""
    setup = Setup(tmp_path, localwhisk, database, kafka_broker.bootstrap)
    user = _name("kurt")
    setup.user(user, {"echo": ECHO_ACTION})
    lines = [f"0.03\t{n}.jpg" for n in range(100)]
    deleted, intact, shortened, cut = (setup.trace(f"{user}-echo-{x}", lines) for x in "abcd")
    setup.write_config()
    loader = setup.start_loader()
    wait_for(lambda: setup.count_runs(f"trace_name = '{deleted.name}'") >= 20, timeout_s=60, what="20 runs")
    deleted.unlink()
    with open(shortened, "r+b") as stream:
        stream.truncate(len("".join(line + "\n" for line in lines[:5]).encode()))
    with open(cut, "r+b") as stream:
        stream.truncate(len("".join(line + "\n" for line in lines[:80]).encode()))
    code = loader.wait(120)
    stderr = loader.stderr_text()
    assert code == 1, stderr[-3000:]
    counts = dict(setup.query("SELECT trace_name, count(*) FROM runs GROUP BY trace_name"))
    assert counts[intact.name] == 100 and counts[cut.name] == 80
    assert setup.count_runs("status <> 'success'") == 0
    (state, ended, summary), = setup.query("SELECT state, ended_at IS NOT NULL, summary FROM experiments")
    assert (state, ended) == ("finished", True)
    errors = {e["trace"]: e for e in summary["trace_errors"]}
    assert set(errors) == {deleted.name, shortened.name, cut.name}
    for path in (deleted, shortened, cut):
        error = errors[path.name]
        sent = counts[path.name]
        assert (error["file"], error["line"], error["lost"]) == (str(path), sent + 1, 100 - sent), error
        assert f"{path}:{sent + 1}: " in error["error"] and f"{path}:{sent + 1}: " in stderr
    assert "No such file or directory" in errors[deleted.name]["error"]
    assert "shorter" in errors[shortened.name]["error"]
    assert "ended after 80 of the 100 invocations" in errors[cut.name]["error"]
    assert summary["planned"] == 400 and summary["issued"] == sum(counts.values())
    assert sum(e["lost"] for e in errors.values()) + summary["issued"] == 400
    assert "3 traces could not be read to their end" in stderr


def test_a_result_the_database_refuses_costs_only_its_own_run(tmp_path, localwhisk, kafka_broker, database):
    """Issue 16 item 3: an action answering an error text with a NUL byte (PostgreSQL text cannot hold it):
    that run is stored store_error with the reason; every other run of its batch is stored as usual."""
    setup = Setup(tmp_path, localwhisk, database, kafka_broker.bootstrap)
    user = _name("nora")
    nul_action = ECHO_ACTION.replace('return {"error": "asked to fail on " + args.get("object", "?")}',
                                     'return {"error": "bad\\x00byte"}')
    setup.user(user, {"echo": nul_action})
    setup.trace(f"{user}-echo", ["0\tx.jpg"] * 10 + ["0\tnul.jpg\tfail:yes"] + ["0\ty.jpg"] * 10)
    setup.write_config(database={"flush_interval_s": 2.0, "batch_size": 500})
    result = setup.run_loader()
    assert result.returncode == 0, result.stderr[-3000:]
    statuses = dict(setup.query("SELECT status, count(*) FROM runs GROUP BY status"))
    assert statuses == {"success": 20, "store_error": 1}
    (reason, attempts, activation), = setup.query(
        "SELECT status_reason, invoke_attempts, activation_id IS NOT NULL FROM runs WHERE status = 'store_error'")
    assert reason.startswith("the database refused its row (ValueError: A string literal cannot contain NUL")
    assert "its status then: application_error" in reason and (attempts, activation) == (1, True)
    assert setup.query("SELECT count(*) FROM parameters")[0][0] == 21 * 3 + 1
    (summary,) = setup.query("SELECT summary FROM experiments")[0]
    assert [e["seq"] for e in summary["store_errors"]] == [10]
    assert "runs the database refused (status store_error): 1" in result.stdout


@pytest.mark.parametrize("sender_processes", [0, 2], ids=["threads", "sender-processes"])
def test_retries_only_what_never_reached_the_platform_and_never_sleep_in_a_sender(
        tmp_path, localwhisk, kafka_broker, database, sender_processes):
    """Issue 16 item 6, through a gateway in front of localwhisk: a 502 after the call was accepted is never
    sent again (each planned invocation runs once); a 503 with Retry-After is rescheduled, and the invoker
    thread goes on with the next invocations meanwhile."""
    busy_seen = set()

    def gateway(method, path, body):
        if method != "POST":
            return FORWARD
        if body["object"].startswith("gw"):
            return AnswerAfterForwarding(502)
        if body["object"].startswith("busy") and body["object"] not in busy_seen:
            busy_seen.add(body["object"])
            return Answer(503, {"Retry-After": "1"})
        return FORWARD

    proxy = PlatformProxy(localwhisk.apihost, gateway)
    try:
        setup = Setup(tmp_path, localwhisk, database, kafka_broker.bootstrap)
        user = _name("olga")
        setup.user(user, {"echo": ECHO_ACTION})
        objects = ["0.jpg", "gw-1.jpg", "2.jpg", "busy-3.jpg", "4.jpg", "5.jpg", "gw-6.jpg", "busy-7.jpg", "8.jpg"]
        setup.trace(f"{user}-echo", [f"0.1\t{o}" for o in objects])
        setup.write_config(openwhisk={"apihost": proxy.url, "invoke_retries": 3, "invoke_retry_backoff_s": 1.0},
                           injection={"sender_processes": sender_processes, "workers": sender_processes or 1})
        result = setup.run_loader()
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        proxy.close()
    rows = setup.query("SELECT input_object, status, invoke_http_status, invoke_attempts, lateness_us, status_reason "
                       "FROM runs ORDER BY seq")
    assert [r[0] for r in rows] == objects
    for obj, status, http_status, attempts, lateness_us, reason in rows:
        if obj.startswith("gw"):
            assert (status, http_status, attempts) == ("http_error", 502, 1), reason
        else:
            assert (status, http_status, attempts) == ("success", 202, 2 if obj.startswith("busy") else 1)
            assert lateness_us < 500_000   # nothing waited for the 1 s Retry-After of another invocation
    assert sorted(b["object"] for _, _, b, _ in proxy.posts()) == sorted(objects + ["busy-3.jpg", "busy-7.jpg"])
    assert setup.activation_count(user) == len(objects)        # every invocation ran exactly once
