"""Injection with the monitor on: every successful activation gets its samples in `resources`;
killing the monitor mid-run loses only resources (with the reason stored), never runs."""

import time
import uuid

import pytest

from loader.storage.recorder import LATE_ANSWER
from tests.injector_support import ECHO_ACTION, Setup, wait_for

pytestmark = [pytest.mark.timeout(240), pytest.mark.cgroups]


@pytest.fixture
def monitored(tmp_path, localwhisk_factory, monitor_factory, kafka_broker, database, cgroups):
    monitor = monitor_factory.start()
    platform = localwhisk_factory.start("process", kafka_bootstrap=kafka_broker.bootstrap,
                                        notification_socket=str(monitor.notification_socket))
    setup = Setup(tmp_path, platform, database, kafka_broker.bootstrap)
    user = f"mona{uuid.uuid4().hex[:8]}"
    setup.user(user, {"echo": ECHO_ACTION})
    return setup, monitor, user


def _monitor_section(monitor):
    return {"enabled": True, "measurement_socket": str(monitor.measurement_socket), "timeout_s": 2.0}


def test_every_successful_activation_has_its_samples(monitored):
    setup, monitor, user = monitored
    setup.trace(f"{user}-echo", [f"0.1\t{i}.jpg\tsleep_s:0.05" for i in range(8)])
    setup.write_config(monitor=_monitor_section(monitor))
    result = setup.run_loader()
    assert result.returncode == 0, result.stderr[-3000:]
    rows = setup.query("""SELECT r.status, r.resources_status, r.resources_reason, count(s.*), max(s.memory_bytes)
                          FROM runs r LEFT JOIN resources s USING (run_id) GROUP BY r.run_id ORDER BY r.seq""")
    assert len(rows) == 8
    for status, resources_status, reason, samples, peak in rows:
        assert status == "success"
        # a monitor slower than completion:resources_wait_s (a loaded machine) still answers: the
        # row is written first, then updated, and says so
        assert resources_status == "ok" and reason in (None, LATE_ANSWER), reason
        assert samples >= 2 and peak > 0  # ~50 ms at 10 ms resolution, plus the bracketing samples


def test_killing_the_monitor_mid_run_loses_only_resources(monitored):
    setup, monitor, user = monitored
    planned = 16
    setup.trace(f"{user}-echo", [f"0.25\t{i}.jpg" for i in range(planned)])
    setup.write_config(monitor=_monitor_section(monitor))
    loader = setup.start_loader()
    wait_for(lambda: setup.count_runs("resources_status = 'ok'") >= 3, timeout_s=60, what="first monitored runs")
    monitor.kill()
    assert loader.wait(120) == 0, loader.stderr_text()[-3000:]
    rows = setup.query("SELECT seq, status, resources_status, resources_reason FROM runs ORDER BY seq")
    assert [r[0] for r in rows] == list(range(planned))  # no run lost, none duplicated
    assert all(r[1] == "success" for r in rows)
    statuses = [r[2] for r in rows]
    assert statuses.count("ok") >= 3 and "monitor_down" in statuses
    assert set(statuses) <= {"ok", "monitor_down"}
    for _, _, resources_status, reason in rows:
        if resources_status == "monitor_down":
            assert reason  # why there are no samples is in the dataset, not only in a log
    summary = loader.stdout_text()
    down = statuses.count("monitor_down")
    assert f"monitor resources: monitor_down {down}, ok {planned - down} ({down} activations without samples)" in summary


def test_restarting_the_monitor_mid_run_loses_nothing_after_it(monitored, monitor_factory):
    """Issue 13: after a restart, activations in containers that already ran are attributed (they
    were all ``unknown`` until the containers were recycled); those that started while it was down
    are ``monitor_down``."""
    setup, monitor, user = monitored
    planned = 60  # 15 s: the restart falls in the middle
    setup.trace(f"{user}-echo", [f"0.25\t{i}.jpg" for i in range(planned)])
    setup.write_config(monitor=_monitor_section(monitor))
    loader = setup.start_loader()
    wait_for(lambda: setup.count_runs("resources_status = 'ok'") >= 3, timeout_s=60, what="first monitored runs")
    monitor.kill()
    time.sleep(1.0)
    sockets = {"notification": str(monitor.notification_socket), "measurement": str(monitor.measurement_socket)}
    monitor_factory.start(sockets=sockets)
    restarted_ms = time.time() * 1000
    assert loader.wait(120) == 0, loader.stderr_text()[-3000:]
    rows = setup.query("SELECT seq, status, resources_status, start_ms, cold_start FROM runs ORDER BY seq")
    assert [r[0] for r in rows] == list(range(planned)) and all(r[1] == "success" for r in rows)
    statuses = [r[2] for r in rows]
    assert set(statuses) <= {"ok", "monitor_down"} and "monitor_down" in statuses, statuses
    after = [r for r in rows if r[3] > restarted_ms]
    assert len(after) >= 10 and not any(r[4] for r in after)  # warm: containers from before the restart
    ok_after = sum(r[2] == "ok" for r in after)
    print(f"\nafter the monitor's restart: {ok_after} of {len(after)} activations attributed (ok); "
          f"{statuses.count('monitor_down')} monitor_down while it was down")
    assert ok_after == len(after)
