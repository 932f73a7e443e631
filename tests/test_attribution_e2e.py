"""End to end, issue 8: an injection on localwhisk's Docker backend with monitor notifications OFF.

The monitor learns about containers only from Docker (events, names, freezer), and the loader's
queries carry the activation record's namespace, name, start and end.  The trace makes two warm
containers of one action (two overlapping activations, then two more): every successful
activation must get resources, each from the container it really ran in (the action reports
its own cgroup, so the test knows which one that was).
"""

from __future__ import annotations

import re
import uuid

import pytest

from tests.injector_support import Setup

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]

#: Sleeps, then reports the cgroup it ran in (its container's id).
WHERE_ACTION = '''
import time
def main(args):
    time.sleep(float(args.get("sleep_s", "0")))
    with open("/proc/self/cgroup") as stream:
        cgroup = stream.read()
    return {"cgroup": cgroup, "outputsize": 0}
'''
CONTAINER_IN_CGROUP = re.compile(r"docker[/-]([0-9a-f]{64})")

#: WAIT (s since the previous line) OBJECT PARAMS.  1 runs in A (cold); 2 arrives while A is busy:
#: B (cold), started after 1 started and ending after A paused; 3 takes the last freed (B, warm),
#: 4 arrives while B is busy: A (resumed after 3 started, running after B paused).
TRACE = ["0\t1.jpg\tsleep_s:2.0", "1.0\t2.jpg\tsleep_s:2.5", "4.0\t3.jpg\tsleep_s:1.0", "0.5\t4.jpg\tsleep_s:1.5"]


def test_resources_without_notifications_each_from_its_own_container(
        tmp_path, monitor_factory, localwhisk_factory, docker_daemon, kafka_broker, database):
    monitor = monitor_factory.start(docker={"enabled": True}, discovery={"docker_url": docker_daemon},
                                    logging={"root": {"level": "INFO"}})
    whisk = localwhisk_factory.start(backend="docker", kafka_bootstrap=kafka_broker.bootstrap,
                                     notification_socket=None)
    setup = Setup(tmp_path, whisk, database, kafka_broker.bootstrap)
    user = f"attr{uuid.uuid4().hex[:8]}"
    setup.user(user, {"where": WHERE_ACTION})
    setup.trace(f"{user}-where", TRACE)
    setup.write_config(monitor={"enabled": True, "measurement_socket": str(monitor.measurement_socket),
                                "timeout_s": 5.0})

    result = setup.run_loader()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "statuses: success 4" in result.stdout, result.stdout

    runs = setup.query("SELECT run_id, activation_id, start_ms, end_ms, resources_status FROM runs ORDER BY seq")
    ran_in = {}
    for run_id, activation_id, start_ms, end_ms, resources_status in runs:
        assert resources_status == "ok", (activation_id, resources_status, monitor.log_text()[-3000:])
        record = setup.activation(user, activation_id)
        container = CONTAINER_IN_CGROUP.search(record["response"]["result"]["cgroup"]).group(1)
        ran_in[activation_id] = container
        # the monitor attributes the activation to the container it really ran in
        answer = monitor.query({"activation": activation_id, "namespace": record["namespace"],
                                "action": record["name"], "start_ms": start_ms, "end_ms": end_ms})
        assert answer.get("container") == container, answer
        stamps_us = [r[0] for r in setup.query(
            "SELECT sampled_at_us FROM resources WHERE run_id = %s ORDER BY sampled_at_us", (run_id,))]
        inside = [t for t in stamps_us if start_ms * 1000 <= t <= end_ms * 1000]
        assert len(inside) >= 50, (activation_id, len(inside))  # >= 1 s at 10 ms, with room for misses
        assert len(stamps_us) - len(inside) <= 2  # at most the samples bracketing the window
    # two warm containers, two activations each: 1 and 4 in A, 2 and 3 in B
    order = [ran_in[r[1]] for r in runs]
    assert order[0] == order[3] and order[1] == order[2] and order[0] != order[1], order
    assert "activation_start" not in monitor.log_text()  # no notification reached the monitor
