"""The verdict end to end: a replay over the platform's default limits (60 invocations a minute,
30 concurrent, as OpenWhisk's) is listed by ``--validate``, then exits 3 naming the throttled share,
with the verdict stored in ``experiments.summary``; a faithful replay exits 0."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import pytest

from tests.injector_support import ECHO_ACTION, ROOT, Setup

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def default_limits(tmp_path, localwhisk_factory, kafka_broker, database):
    platform = localwhisk_factory.start("process", kafka_bootstrap=kafka_broker.bootstrap,
                                        actions_per_minute=60, concurrent_actions=30)
    return Setup(tmp_path, platform, database, kafka_broker.bootstrap)


def test_a_replay_over_the_default_limits_is_listed_then_exits_3(default_limits):
    setup = default_limits
    user = f"tina{uuid.uuid4().hex[:8]}"
    setup.user(user, {"echo": ECHO_ACTION})
    planned = 150  # 50 a second for 3 s: two calendar minutes at most, so at most 120 accepted
    setup.trace(f"{user}-echo", ["0.02\tx.jpg"] * planned)
    setup.write_config(injection={"fail_on": {"throttled_share": 0, "lateness_p99_ms": 1000}})

    validate = setup.run_loader("--validate")
    assert validate.returncode == 0, validate.stderr
    lines = validate.stdout.splitlines()
    assert lines[0] == f"ok: 1 traces, {planned} invocations over 3.000 s, 1 users, 1 actions"
    assert lines[1] == (f"user {user!r}: its traces plan up to {planned} invocations in 60 s, over its limit of "
                        f"60 per minute: expect 429s (throttled)")
    assert lines[2] == (f"user {user!r}: up to {planned} of its invocations may run at once (each lasting its "
                        f"action's timeout, an upper bound), over its limit of 30 concurrent")
    assert lines[3].startswith("2 user limit(s) exceeded or unknown: the run would be throttled")

    result = setup.run_loader()
    assert result.returncode == 3, result.stderr[-3000:]
    (summary,) = setup.query("SELECT summary FROM experiments")[0]
    throttled = summary["statuses"]["throttled"]
    assert throttled >= planned - 120
    verdict = summary["verdict"]
    assert verdict["reproduced"] is False and verdict["thresholds"] == {"throttled_share": 0.0, "lateness_p99_ms": 1000.0}
    assert [b["key"] for b in verdict["breaches"]] == ["throttled_share"]
    share = round(throttled / planned, 6)
    assert verdict["fidelity"]["throttled_share"] == share and verdict["fidelity"]["planned"] == planned
    text = f"throttled_share {share:g} (fail_on: at most 0)"
    assert f"verdict: did NOT reproduce the trace: {text}" in result.stdout
    assert result.stderr.rstrip().endswith(f"loader: did NOT reproduce the trace: {text}")

    # with durations recorded by that run, the concurrency estimate uses them (echo takes ms plus
    # its cold starts and waits, not its 60 s timeout)
    again = setup.run_loader("--validate")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1] == lines[1]
    for line in again.stdout.splitlines()[2:-1]:
        peak = int(re.match(rf"user {user!r}: up to (\d+) of its invocations may run at once \(each lasting the "
                            rf"p99 duration recorded for its action\), over its limit of 30 concurrent$", line)[1])
        assert peak < planned

    # the report shows the stored verdict first
    name = summary["experiment"]["name"]
    report = subprocess.run([sys.executable, "-m", "loader.report", name, "--out", str(setup.root / "report"),
                             "--config", str(setup.config_path)], check=False, cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    page = (setup.root / "report" / "index.html").read_text()
    assert f'<div class="verdict bad">Did NOT reproduce the trace: {text}</div>' in page
    assert page.index("verdict bad") < page.index("<h3>Configuration and provenance</h3>")
    assert "Verdict stored by the loader at the end of the run." in page
    assert "No resource samples: the monitor was off for this experiment (monitor:enabled)." in page
    assert page.count("<img ") == 5  # no empty resource figures


def test_a_faithful_replay_is_judged_reproduced(default_limits):
    setup = default_limits
    user = f"ugo{uuid.uuid4().hex[:8]}"
    setup.user(user, {"echo": ECHO_ACTION})
    setup.trace(f"{user}-echo", ["0.1\tx.jpg"] * 5)
    setup.write_config(injection={"fail_on": {"issued_share": 1, "throttled_share": 0, "error_share": 0,
                                              "lost_share": 0, "lateness_max_ms": 1000}})
    validate = setup.run_loader("--validate")
    assert validate.returncode == 0 and len(validate.stdout.splitlines()) == 1, validate.stdout
    result = setup.run_loader()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "verdict: reproduced the trace within injection:fail_on" in result.stdout
    (summary,) = setup.query("SELECT summary FROM experiments")[0]
    assert summary["verdict"]["reproduced"] is True and summary["verdict"]["breaches"] == []
    assert summary["verdict"]["fidelity"]["issued_share"] == 1.0


def test_a_threshold_out_of_range_is_a_configuration_error(default_limits):
    setup = default_limits
    setup.write_config(injection={"fail_on": {"throttled_share": 2}})
    result = setup.run_loader("--validate")
    assert result.returncode == 2
    assert f"{setup.config_path}: injection:fail_on:throttled_share: " in result.stderr
