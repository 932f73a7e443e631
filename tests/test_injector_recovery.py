"""After a SIGKILL of the loader (issue 16 item 4): the runs it left `sent` are completed from their records,
what has none ends `lost` with a reason, what was never sent is counted, and the experiment is `crashed`,
by `python -m loader --recover NAME` or automatically at the next start.  Real parts: localwhisk over
HTTP (which keeps running the activations of the dead loader), the Tansu broker, PostgreSQL."""

from __future__ import annotations

import signal
import uuid

import pytest

from tests.injector_support import ECHO_ACTION, Setup, wait_for

pytestmark = pytest.mark.timeout(240)


def _killed_mid_run(tmp_path, localwhisk, kafka_broker, database, name: str) -> tuple[Setup, dict[str, int]]:
    """A loader SIGKILLed while activations are in flight; the planned invocations of each trace."""
    setup = Setup(tmp_path, localwhisk, database, kafka_broker.bootstrap)
    user = f"pia{uuid.uuid4().hex[:8]}"
    setup.user(user, {"echo": ECHO_ACTION})
    planned = {f"{user}-echo": 60, f"{user}-echo-2": 12}
    setup.trace(f"{user}-echo", ["0.05\tx.jpg\tsleep_s:1.5"] * 60)
    setup.trace(f"{user}-echo-2", ["0.1\ty.jpg"] * 10 + ["30\tlate.jpg"] * 2)
    setup.write_config(experiment={"name": name}, injection={"sender_processes": 0})
    loader = setup.start_loader()
    try:
        wait_for(lambda: setup.count_runs("status = 'sent'") >= 5 and setup.count_runs("status = 'success'") >= 3,
                 timeout_s=60, what="runs in flight")
        refused = setup.run_loader("--recover", name)
        assert refused.returncode == 1, refused.stderr
        assert f"experiment {name!r} is still running: its loader holds its lease" in refused.stderr
    finally:
        loader.signal(signal.SIGKILL)   # also when the test fails: no loader outlives it
    assert loader.wait(30) == -signal.SIGKILL
    assert setup.query("SELECT state, ended_at FROM experiments WHERE name = %s", (name,)) == [("running", None)]
    assert setup.count_runs("status = 'sent'") > 0
    return setup, planned


def _assert_recovered(setup: Setup, name: str, planned: dict[str, int], sent_before: list) -> dict:
    (state, ended, summary), = setup.query("SELECT state, ended_at IS NOT NULL, summary FROM experiments "
                                           "WHERE name = %s", (name,))
    assert (state, ended) == ("crashed", True)
    assert setup.count_runs(f"status IN ('sent', 'planned') AND experiment_id = {summary['experiment']['id']}") == 0
    recovery = summary["recovery"]
    assert recovery["sent_runs"] == len(sent_before)
    # localwhisk ran them all to their end: every record is found, nothing is lost
    assert (recovery["completed"], recovery["lost"]) == (len(sent_before), 0)
    statuses = dict(setup.query("SELECT r.status, count(*) FROM runs r JOIN experiments e USING (experiment_id) "
                                "WHERE e.name = %s GROUP BY r.status", (name,)))
    assert statuses == {"success": sum(statuses.values())} and summary["statuses"] == statuses
    progress = dict(setup.query("SELECT r.trace_name, max(r.seq) + 1 FROM runs r JOIN experiments e "
                                "USING (experiment_id) WHERE e.name = %s GROUP BY r.trace_name", (name,)))
    for trace, count in planned.items():
        expected = count - progress.get(trace, 0)
        assert recovery["traces"][trace]["never_sent"] == expected
    assert recovery["never_sent"] == sum(count - progress.get(t, 0) for t, count in planned.items()) >= 2
    assert recovery["planned"] == sum(planned.values())
    assert recovery["planned"] == sum(statuses.values()) + recovery["never_sent"] + recovery["unrecorded"]
    return summary


def test_recover_completes_what_a_killed_loader_left_sent(tmp_path, localwhisk, kafka_broker, database):
    setup, planned = _killed_mid_run(tmp_path, localwhisk, kafka_broker, database, "killed")
    sent_before = setup.query("SELECT trace_name, seq FROM runs WHERE status = 'sent'")
    result = setup.run_loader("--recover", "killed")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _assert_recovered(setup, "killed", planned, sent_before)
    assert (f"experiment 'killed' recovered (crashed): {len(sent_before)} runs left sent: {len(sent_before)} "
            f"completed from their records, 0 lost; {summary['recovery']['never_sent']} planned invocations never "
            "sent") in result.stdout
    again = setup.run_loader("--recover", "killed")
    assert again.returncode == 1 and "experiment 'killed' is crashed, not running: nothing to recover" in again.stderr


def test_the_next_start_recovers_an_experiment_whose_loader_died(tmp_path, localwhisk, kafka_broker, database):
    setup, planned = _killed_mid_run(tmp_path, localwhisk, kafka_broker, database, "killed-too")
    sent_before = setup.query("SELECT trace_name, seq FROM runs WHERE status = 'sent'")
    other = tmp_path / "other-traces"                  # the next experiment: one short trace elsewhere
    other.mkdir()
    (other / next(iter(planned))).write_text("0\tz.jpg\n")
    setup.write_config(experiment={"name": "next"}, injection={"sender_processes": 0, "tracedir": str(other)})
    result = setup.run_loader()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "experiment 'killed-too' was left running by a loader that died: recovering it" in result.stderr
    _assert_recovered(setup, "killed-too", planned, sent_before)
    assert setup.query("SELECT state FROM experiments WHERE name = 'next'") == [("finished",)]
