"""Nothing forgotten after a monitor restart (issue 13, item 5).

A monitor killed and started again must attribute the next activations in the containers that
already run, with their samples: localwhisk's process containers because localwhisk announces its
live containers again to the new monitor (localwhisk/notify.py), Docker containers because the
monitor lists them when it starts (monitor/docker_events.py), as for a stock OpenWhisk invoker
that sends no notice at all.  Activations that started while the monitor was down are answered
``monitor_down``, never ``unknown`` nor with partial samples.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from loader.monitor_client import MonitorAnswer, MonitorClient, ResourcesStatus
from tests.slowness import scaled_s

pytestmark = [pytest.mark.timeout(scaled_s(150))]

ACTION_CODE = '''
import time

def main(args):
    held = b"\\x01" * (8 * 1024 * 1024)  # touched: the container's memory grows while it runs
    time.sleep(float(args.get("sleep_s", 0)))
    return {"held": len(held)}
'''
#: Containers warmed before the restart, and rounds of as many activations after it.
CONTAINERS = 3
ROUNDS = 4
SLEEP_S = 0.3
#: An activation started while the monitor is down, still running once it is back.
SPANNING_S = scaled_s(3.0)


def invoke(lw, auth: str, sleep_s: float, *, blocking: bool = True, action: str = "restarted") -> dict:
    response = requests.post(lw.url(f"actions/{action}?blocking={'true' if blocking else 'false'}"),
                             json={"sleep_s": sleep_s}, auth=tuple(auth.split(":", 1)), timeout=120)
    assert response.status_code in ((200,) if blocking else (202,)), response.text
    record = response.json()
    if blocking:
        assert record["response"]["status"] == "success", record
    return record


def record_of(lw, auth: str, activation_id: str) -> dict:
    deadline_s = time.monotonic() + scaled_s(30)
    while True:
        response = requests.get(lw.url(f"activations/{activation_id}"), auth=tuple(auth.split(":", 1)), timeout=10)
        if response.status_code == 200:
            return response.json()
        assert time.monotonic() < deadline_s, f"no record of {activation_id}"
        time.sleep(0.05)


def concurrently(lw, auth: str, count: int, sleep_s: float) -> list[dict]:
    records: list[dict] = [{}] * count

    def one(i: int) -> None:
        records[i] = invoke(lw, auth, sleep_s)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(records), "an invocation failed (see above)"
    return records


def cold(record: dict) -> bool:
    return any(a["key"] == "initTime" for a in record.get("annotations", []))


def ask(client: MonitorClient, record: dict, *, by_name: bool = False) -> MonitorAnswer:
    """The loader's query for ``record`` (with namespace and action: attribution when no notice bound it)."""
    names = {"namespace": record["namespace"], "action": record["name"]} if by_name else {}
    return client.samples_for_activation(record["activationId"], start_s=record["start"] / 1000,
                                         end_s=record["end"] / 1000, **names)


def same_sockets(monitor) -> dict:
    """The configuration section that starts a monitor on ``monitor``'s sockets."""
    return {"notification": str(monitor.notification_socket), "measurement": str(monitor.measurement_socket)}


def check_attributed(client: MonitorClient, records: list[dict], *, by_name: bool = False) -> int:
    """Every record's answer is ``ok``, with samples from before its start (the baseline: the
    first activation after a restart too) to after its end; how many."""
    attributed = 0
    for record in records:
        answer = ask(client, record, by_name=by_name)
        assert answer.status is ResourcesStatus.OK, (record["activationId"], answer)
        assert len(answer.samples) >= 2 and all(s.memory_bytes for s in answer.samples), answer
        # The record's start is in whole ms; the monitor's window starts at the start notice's
        # date, taken before it (localwhisk/invoker.py): the baseline is in or before that ms.
        assert answer.samples[0].sampled_at_us < (record["start"] + 1) * 1000, ("no baseline", record["activationId"])
        assert answer.samples[-1].sampled_at_us >= record["end"] * 1000, ("no sample after the end", answer)
        attributed += 1
    return attributed


def restart_with_process_containers(monitor_factory, localwhisk_factory, containers: int, rounds: int,
                                    spanning: bool) -> None:
    """Warm ``containers``, kill the monitor, invoke (and, with ``spanning``, start an activation
    that ends after the restart), restart it, then ``rounds`` of ``containers`` concurrent activations."""
    first = monitor_factory.start(logging={"root": {"level": "INFO"}})
    lw = localwhisk_factory.start("process", notification_socket=str(first.notification_socket))
    auth = lw.create_user("restarted")
    lw.deploy(auth, "restarted", ACTION_CODE, memory_mb=128)
    warmed = concurrently(lw, auth, containers, 1.0)
    assert sum(map(cold, warmed)) == containers

    first.kill()  # SIGKILL: its sockets stay behind, stale
    during = invoke(lw, auth, 0.0)              # ran while no monitor listened
    if spanning:                                # starts now, ends after the restart
        spanning_id = invoke(lw, auth, SPANNING_S, blocking=False)["activationId"]
        time.sleep(0.2)
    second = monitor_factory.start(sockets=same_sockets(first), logging={"root": {"level": "INFO"}})
    client = MonitorClient(second.measurement_socket, timeout_s=5)

    first_after = invoke(lw, auth, 0.0)         # at once: the re-announcement precedes its start notice
    spanned = [record_of(lw, auth, spanning_id)] if spanning else []  # its container is free again
    records = [first_after] + [r for _ in range(rounds) for r in concurrently(lw, auth, containers, SLEEP_S)]
    assert not any(map(cold, [during, *spanned, *records])), "an activation after the restart ran in a new container"
    attributed = check_attributed(client, records)
    print(f"\n[process] after the restart: {attributed} of {len(records)} activations in pre-existing "
          "containers attributed, with samples from before their start to after their end")

    assert ask(client, during).status is ResourcesStatus.MONITOR_DOWN
    for record in spanned:
        down = ask(client, record)
        assert down.status is ResourcesStatus.MONITOR_DOWN and "before the monitor watched" in down.reason, down
    assert f"announced {containers} live container(s)" in lw.log_text()
    assert "notification dropped" not in second.log_text()


@pytest.mark.cgroups
def test_process_containers_are_attributed_after_a_monitor_restart(monitor_factory, localwhisk_factory, cgroups):
    restart_with_process_containers(monitor_factory, localwhisk_factory, CONTAINERS, ROUNDS, spanning=True)


@pytest.mark.cgroups
@pytest.mark.vm
def test_process_container_is_attributed_after_a_monitor_restart_short(monitor_factory, localwhisk_factory,
                                                                       cgroups):
    """The same, short enough for the cgroup v2 guest (10x slower, tests/vm/): one container."""
    restart_with_process_containers(monitor_factory, localwhisk_factory, 1, 1, spanning=False)


def restart_with_docker_containers(monitor_factory, localwhisk_factory, docker_url: str, containers: int,
                                   after: int, spanning: bool) -> None:
    """As with a stock OpenWhisk invoker: no notice at all, the monitor lists Docker's containers
    (paused ones included: localwhisk pauses them 50 ms after each activation) when it starts.
    Warm ``containers``, kill the monitor, invoke (and, with ``spanning``, start an activation of
    another action that ends after the restart), restart it, then ``after`` activations one at a time."""
    settings = {"discovery": {"docker": True, "docker_url": docker_url}, "docker": {"enabled": True},
                "logging": {"root": {"level": "INFO"}}}
    first = monitor_factory.start(**settings)
    lw = localwhisk_factory.start("docker")  # no notification socket
    auth = lw.create_user("restarted")
    lw.deploy(auth, "restarted", ACTION_CODE, memory_mb=128)
    lw.deploy(auth, "spanner", ACTION_CODE, memory_mb=128)
    warmed = concurrently(lw, auth, containers, 1.0)
    assert sum(map(cold, warmed)) == containers

    first.kill()
    during = invoke(lw, auth, 0.0)
    # another action (concurrent activations of one action make attribution by name and time
    # ambiguous), in a container created while the monitor is down, running over its restart
    if spanning:
        spanning_id = invoke(lw, auth, SPANNING_S, blocking=False, action="spanner")["activationId"]
    time.sleep(scaled_s(0.3))  # every container of "restarted" paused
    second = monitor_factory.start(sockets=same_sockets(first), **settings)
    client = MonitorClient(second.measurement_socket, timeout_s=5)
    listed = containers + (1 if spanning else 0)
    assert f"Docker listing at start-up: {listed} OpenWhisk container(s) already there" in second.log_text()

    # at once, in the container paused last (listed paused), then one at a time
    records = [invoke(lw, auth, 0.0)] + [invoke(lw, auth, SLEEP_S) for _ in range(after - 1)]
    assert not any(map(cold, [during, *records])), "an activation after the restart ran in a new container"
    attributed = check_attributed(client, records, by_name=True)
    print(f"\n[docker] after the restart: {attributed} of {len(records)} activations in pre-existing "
          "containers attributed, with samples from before their start to after their end")
    assert ask(client, during, by_name=True).status is ResourcesStatus.MONITOR_DOWN
    if spanning:
        assert ask(client, record_of(lw, auth, spanning_id), by_name=True).status is ResourcesStatus.MONITOR_DOWN


@pytest.mark.docker
def test_docker_containers_are_attributed_after_a_monitor_restart(monitor_factory, localwhisk_factory, docker_daemon):
    restart_with_docker_containers(monitor_factory, localwhisk_factory, docker_daemon, CONTAINERS,
                                   1 + ROUNDS * CONTAINERS, spanning=True)


@pytest.mark.docker
@pytest.mark.vm
def test_docker_container_is_attributed_after_a_monitor_restart_short(monitor_factory, localwhisk_factory,
                                                                      docker_daemon):
    """The same, short enough for the cgroup v2 guest (there with Docker's systemd driver): one container."""
    restart_with_docker_containers(monitor_factory, localwhisk_factory, docker_daemon, 1, 2, spanning=False)
