"""Injector mode end to end: traces → localwhisk (real HTTP) → Kafka user events (real broker) → PostgreSQL."""

import json
import signal
import uuid

import pytest

from loader.storage.summary import format_summary
from tests.injector_support import ECHO_ACTION, Setup, wait_for

pytestmark = pytest.mark.timeout(180)


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture
def setup(tmp_path, localwhisk, kafka_broker, database):
    return Setup(tmp_path, localwhisk, database, kafka_broker.bootstrap)


def _runs(setup, columns):
    return setup.query(f"SELECT {columns} FROM runs ORDER BY trace_name, seq")


@pytest.mark.parametrize("sender_processes", [0, 2], ids=["threads", "sender-processes"])
def test_every_planned_invocation_is_one_terminal_row_equal_to_its_activation_record(setup, sender_processes):
    alice, bobby = _name("alice"), _name("bobby")
    setup.user(alice, {"echo": ECHO_ACTION, "other": ECHO_ACTION})
    setup.user(bobby, {"echo": ECHO_ACTION})
    setup.trace(f"{alice}-echo-256-1", ["0.25\tin/1.jpg\tk:v:w", "0.125\t2.jpg\tsleep_s:0.05", ".375\t3.jpg",
                                        "0.0\t4.jpg\tfail:yes"])
    setup.trace(f"{alice}-other-128", ["0.5\ta.wav\tx:1", "0.3333\tb.wav"])
    setup.trace(f"{bobby}-echo", ["0.1\t9.avi", "0.9\t8.avi\tp:", "0.000001\t7.avi"])
    # the last assertion checks that completions came from the user events: give a loaded machine's
    # broker time to deliver them before the record is polled instead
    setup.write_config(injection={"sender_processes": sender_processes},
                       completion={"event_timeout_s": 20.0})

    result = setup.run_loader()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "invocations: 9 issued of 9 planned" in result.stdout
    assert "statuses: application_error 1, success 8" in result.stdout

    rows = setup.query("""SELECT trace_name, seq, user_name, action_name, input_object, planned_offset_us,
                                 sent_offset_us, lateness_us, status, activation_id, start_ms, end_ms, duration_ms,
                                 wait_time_ms, init_time_ms, cold_start, kind, memory_limit_mb, response_size_bytes,
                                 output_size_bytes, extract_ms, transform_ms, load_ms, result_error, invoke_http_status,
                                 invoke_attempts, run_id
                          FROM runs ORDER BY trace_name, seq""")
    assert len(rows) == 9
    planned = {(r[0], r[1]): r[5] for r in rows}
    # fractional waits accumulate exactly
    assert planned[(f"{alice}-echo-256-1", 0)] == 250_000 and planned[(f"{alice}-echo-256-1", 2)] == 750_000
    assert planned[(f"{alice}-echo-256-1", 3)] == 750_000
    assert planned[(f"{alice}-other-128", 1)] == 833_300
    assert planned[(f"{bobby}-echo", 2)] == 1_000_001
    for row in rows:
        (trace, seq, user, action, input_object, planned_us, sent_us, lateness_us, status, activation_id,
         *_rest) = row
        assert sent_us >= planned_us and lateness_us == sent_us - planned_us  # never early, lateness stored
        assert row[24:26] == (202, 1)
        record = setup.activation(user, activation_id)
        notes = {a["key"]: a["value"] for a in record["annotations"]}
        result_obj = record["response"]["result"]
        expected_status = "success" if record["response"]["status"] == "success" else "application_error"
        assert status == expected_status
        assert row[10:20] == (record["start"], record["end"], record["duration"], notes["waitTime"],
                              notes.get("initTime"), "initTime" in notes, notes["kind"], notes["limits"]["memory"],
                              record["response"]["size"], result_obj.get("outputsize"))
        if status == "success":
            assert row[20:24] == (1.25, result_obj["times"]["transform"], 0.5, None)
            assert result_obj["params"]["object"] == input_object.rsplit("/", 1)[-1]
        else:
            assert row[23] == f"asked to fail on {input_object}"
    # the sending honours the order of distinct planned times (seq 2 and 3 share theirs: no order
    # between them, docs/injection_traces.md)
    alice_echo = {r[1]: r[6] for r in rows if r[0] == f"{alice}-echo-256-1"}
    assert alice_echo[0] < alice_echo[1] < min(alice_echo[2], alice_echo[3])
    params = dict(setup.query("SELECT p.name, p.value FROM parameters p JOIN runs r USING (run_id) "
                              "WHERE r.trace_name = %s AND r.seq = 0", (f"{alice}-echo-256-1",)))
    assert params == {"incont": "faasload-inputs", "object": "1.jpg", "outcont": "faasload-outputs", "k": "v:w"}
    assert setup.query("SELECT count(*) FROM parameters")[0][0] == 9 * 3 + 5
    (summary,) = setup.query("SELECT summary FROM experiments")[0]
    assert summary["statuses"] == {"application_error": 1, "success": 8}
    assert summary["user_events"]["matched"] == 9  # completions came from the user events
    if sender_processes:  # handed over ahead, each sent at its time by its sender
        senders = summary["senders"]
        assert senders["processes"] == 2 and senders["held_back"] == 0
        assert 1 <= senders["peak_held_ahead"] <= 9 and senders["peak_in_flight"] >= 1
        assert (f"requests in flight: peak {senders['peak_in_flight']} (sum over 2 sender processes; cap "
                f"{senders['max_in_flight']}), 0 held back by the cap, at most {senders['peak_held_ahead']} held "
                "ahead of their planned time") in format_summary(summary)
    else:
        assert "senders" not in summary


def test_a_malformed_trace_is_rejected_before_any_invocation(setup):
    user = _name("carol")
    setup.user(user, {"echo": ECHO_ACTION})
    good = setup.trace(f"{user}-echo", ["0.1\t1.jpg"])
    bad = setup.trace(f"{user}-echo-2", ["0.1\t1.jpg", "soon\t2.jpg", "0.2\t3.jpg\tnocolon"])
    setup.trace(f"{user}-missing", ["0.1\t1.jpg"])
    setup.trace("nobody1-echo", ["0.1\t1.jpg"])
    setup.write_config()

    result = setup.run_loader()
    assert result.returncode == 2
    assert f"loader: {bad}:2: WAIT 'soon' is not a non-negative number of seconds" in result.stderr
    assert f"loader: {bad}:3: field 3 'nocolon' is not PARAM:VALUE" in result.stderr
    assert "no key file for user 'nobody1'" in result.stderr
    assert f"action 'missing' unknown to the platform at {setup.localwhisk.apihost} for user '{user}'" in result.stderr
    assert "4 problem(s)" in result.stderr and f"{good}:" not in result.stderr
    assert setup.activation_count(user) == 0
    assert setup.query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'")[0][0] == 0

    validate = setup.run_loader("--validate")
    assert validate.returncode == 2
    assert validate.stdout.count("\n") == 4 and f"{bad}:2: WAIT 'soon'" in validate.stdout


def test_validate_passes_on_good_traces(setup):
    user = _name("delta")
    setup.user(user, {"echo": ECHO_ACTION})
    setup.trace(f"{user}-echo", ["0.5\t1.jpg", "0.25\t2.jpg"])
    setup.write_config()
    result = setup.run_loader("--validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok: 1 traces, 2 invocations over 0.750 s, 1 users, 1 actions"
    assert setup.activation_count(user) == 0


@pytest.mark.parametrize("sender_processes", [0, 2], ids=["threads", "sender-processes"])
def test_sigterm_stops_injecting_records_what_was_sent_and_cancels_the_rest(setup, sender_processes):
    user = _name("ellen")
    setup.user(user, {"echo": ECHO_ACTION})
    setup.trace(f"{user}-echo", ["0.05\tx.jpg"] * 20 + ["30\tlate.jpg"] * 5)
    setup.write_config(injection={"sender_processes": sender_processes})
    loader = setup.start_loader()
    wait_for(lambda: setup.count_runs("status = 'success'") >= 20, timeout_s=60, what="the first 20 runs")
    loader.signal(signal.SIGTERM)
    assert loader.wait(60) == 0, loader.stderr_text()[-2000:]
    statuses = dict(setup.query("SELECT status, count(*) FROM runs GROUP BY status"))
    assert statuses == {"success": 20, "cancelled": 5}
    reasons = {r[0] for r in setup.query("SELECT status_reason FROM runs WHERE status = 'cancelled'")}
    assert reasons == {"the loader was stopped before this invocation's planned time"}
    (summary,) = setup.query("SELECT summary FROM experiments")[0]
    assert summary["stopped"] is True and summary["statuses"] == {"cancelled": 5, "success": 20}
    assert setup.activation_count(user) == 20


def test_experiments_are_kept_side_by_side(setup):
    user = _name("frank")
    setup.user(user, {"echo": ECHO_ACTION})
    setup.trace(f"{user}-echo", ["0\t1.jpg"])
    setup.write_config()
    assert setup.run_loader().returncode == 0
    assert setup.run_loader().returncode == 0
    rows = setup.query("SELECT e.name, count(r.run_id) FROM experiments e JOIN runs r USING (experiment_id) "
                       "GROUP BY e.name")
    assert len(rows) == 2 and {n for _, n in rows} == {1}
    setup.write_config(experiment={"name": rows[0][0]})
    again = setup.run_loader()
    assert again.returncode == 1 and f"experiment {rows[0][0]!r} already holds 1 runs" in again.stderr
    assert json.loads(json.dumps(setup.query("SELECT count(*) FROM runs")[0][0])) == 2


def test_rerunning_a_named_experiment_is_refused_before_touching_it(setup):
    """Issue 16 item 5: the refusal comes before any write (the finished experiment keeps its end)."""
    user = _name("fiona")
    setup.user(user, {"echo": ECHO_ACTION})
    setup.trace(f"{user}-echo", ["0\t1.jpg"])
    setup.write_config(experiment={"name": "kept-as-it-was", "description": "first"})
    assert setup.run_loader().returncode == 0
    columns = "experiment_id, ended_at, summary, config, description, start_epoch_us"
    before = setup.query(f"SELECT {columns} FROM experiments WHERE name = 'kept-as-it-was'")
    assert before and before[0][1] is not None
    setup.write_config(experiment={"name": "kept-as-it-was", "description": "second"})
    again = setup.run_loader()
    assert again.returncode == 1 and "experiment 'kept-as-it-was' already holds 1 runs" in again.stderr
    assert setup.query(f"SELECT {columns} FROM experiments WHERE name = 'kept-as-it-was'") == before
    assert setup.activation_count(user) == 1
