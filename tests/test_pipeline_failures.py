"""A run whose scheduler thread dies (issue 16 item 1): stopped loudly, never taken for finished.

The real pipeline (localwhisk over HTTP, the Tansu broker, PostgreSQL) runs in this process with
one trace file and one trace source that raises an unexpected exception (a bug) after three
invocations: the scheduler thread dies of it.
"""

from __future__ import annotations

import logging
import uuid

import pytest

from loader import config as loader_config
from loader.experiment import ExperimentSpec, exit_code, run_experiment
from loader.injection.traces import FileTraceSource, scan_trace
from loader.plan import PlannedInvocation
from loader.platform.keys import load_key
from tests.injector_support import ECHO_ACTION, Setup

pytestmark = pytest.mark.timeout(120)


class ExplodingSource:
    """Three invocations, then the kind of exception a bug raises."""

    def __init__(self, user: str):
        self.name, self.user, self.sent = f"{user}-echo-bug", user, 0

    def next_invocation(self):
        if self.sent == 3:
            raise RuntimeError("a bug in a trace source")
        self.sent += 1
        return PlannedInvocation(self.name, self.sent - 1, self.user, "echo", self.sent * 100_000, "b.jpg",
                                 (("object", "b.jpg"),))


def test_a_dead_scheduler_thread_stops_the_run_loudly(tmp_path, localwhisk, kafka_broker, database, caplog):
    setup = Setup(tmp_path, localwhisk, database, kafka_broker.bootstrap)
    user = f"lena{uuid.uuid4().hex[:8]}"
    setup.user(user, {"echo": ECHO_ACTION})
    trace = setup.trace(f"{user}-echo", [f"0.1\t{n}.jpg" for n in range(40)])
    config = loader_config.load(setup.write_config(injection={"sender_processes": 0}))
    sources = [FileTraceSource.of_scan(scan_trace(trace), incont="i", outcont="o"), ExplodingSource(user)]
    with caplog.at_level(logging.INFO):
        summary = run_experiment(config, ExperimentSpec(mode="injection", sources=sources,
                                                        keys={user: load_key(setup.authkeys, user)},
                                                        planned_total=43))
    assert summary["failure"] == "the scheduler thread failed: RuntimeError: a bug in a trace source"
    assert summary["state"] == "stopped" and exit_code(summary) == 1
    failed = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info and "scheduler" in r.getMessage()]
    assert failed and failed[0].exc_info[0] is RuntimeError     # logged at ERROR, with the traceback
    (state, ended, stored), = setup.query("SELECT state, ended_at IS NOT NULL, summary FROM experiments")
    assert (state, ended, stored["failure"]) == ("stopped", True, summary["failure"])
    rows = setup.query("SELECT trace_name, seq, status, status_reason FROM runs ORDER BY trace_name, seq")
    assert [(r[0], r[1]) for r in rows if r[0] == trace.name] == [(trace.name, n) for n in range(40)]
    assert [r[2] for r in rows if r[0].endswith("-bug")] == ["success"] * 3
    cancelled = {r[3] for r in rows if r[2] == "cancelled"}
    assert cancelled == {"the loader stopped after an internal failure (RuntimeError: a bug in a trace source) "
                         "before this invocation's planned time"}
    assert {r[2] for r in rows} == {"success", "cancelled"}
