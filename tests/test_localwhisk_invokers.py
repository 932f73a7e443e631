"""localwhisk with two invokers (``invokers: 2``): each action runs on its home invoker, whose name is the
user event's ``source`` and whose own monitor is notified (and only that one)."""

from __future__ import annotations

import time

import pytest
import requests

from localwhisk.invokers import home_invoker
from tests.test_localwhisk_events import _auth, _consumer, _events_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.cgroups]

HELLO = "def main(args):\n    import time\n    time.sleep(0.05)\n    return {'ok': True}\n"


def _actions_on_both(namespace: str) -> dict[int, str]:
    """An action name for each of the two invokers (their home invoker, as localwhisk computes it)."""
    chosen: dict[int, str] = {}
    for n in range(100):
        name = f"act{n}"
        chosen.setdefault(home_invoker(namespace, f"{namespace}/{name}", 2), name)
        if len(chosen) == 2:
            return chosen
    raise AssertionError("no action name for each invoker")


def test_two_invokers_each_with_its_source_containers_and_monitor(localwhisk_factory, monitor_factory,
                                                                  kafka_broker, cgroups):
    monitors = [monitor_factory.start(), monitor_factory.start()]
    platform = localwhisk_factory.start(
        "process", kafka_bootstrap=kafka_broker.bootstrap,
        settings={"invokers": 2, "server:instance": 0,
                  "monitor:notification_sockets": {f"invoker{k}": str(m.notification_socket)
                                                   for k, m in enumerate(monitors)}})
    consumer = _consumer(kafka_broker.bootstrap)
    user = f"inv{time.time_ns()}"
    key = platform.create_user(user)
    namespace = requests.get(platform.apihost + "/api/v1/namespaces", auth=_auth(key), timeout=10).json()[0]
    actions = _actions_on_both(namespace)
    ran: dict[str, int] = {}
    for invoker, action in actions.items():
        platform.deploy(key, action, HELLO, memory_mb=128)
        for _ in range(2):
            response = requests.post(platform.url(f"actions/{action}"), auth=_auth(key), timeout=10)
            assert response.status_code == 202
            ran[response.json()["activationId"]] = invoker
    events = _events_until(consumer, lambda evs: set(ran) <= {e["body"].get("activationId") for e in evs})
    consumer.close()
    sources = {e["body"]["activationId"]: e["source"] for e in events if e["body"].get("activationId") in ran}
    assert sources == {activation: f"invoker{invoker}" for activation, invoker in ran.items()}
    for activation, invoker in ran.items():
        answers = [m.query({"activation": activation}) for m in monitors]
        mine, other = answers[invoker], answers[1 - invoker]
        assert mine["activation"] == activation and mine["samples"], mine   # its invoker's monitor sampled it
        assert other.get("code") == "unknown_activation", other             # the other monitor never saw it
    assert "invokers: invoker0, invoker1" in platform.log_text()


def test_invoker_names_container_names_and_configuration(tmp_path):
    from types import SimpleNamespace

    from localwhisk import config as lw_config
    from localwhisk.platform import Platform
    path = tmp_path / "localwhisk.yml"
    path.write_text(f"invokers: 3\nserver:\n  instance: 4\nstate:\n  dir: {tmp_path}/state\n")
    platform = Platform(lw_config.load(path))
    assert [h.name for h in platform.hosts] == ["invoker4", "invoker5", "invoker6"]
    job = SimpleNamespace(identity=SimpleNamespace(namespace="ns"), action=SimpleNamespace(name="act"))
    assert platform._container_name(platform.hosts[1], job) == "wsk5_1_ns_act"
    assert platform._container_name(platform.hosts[1], job) == "wsk5_2_ns_act"
    assert platform._container_name(platform.hosts[0], job) == "wsk4_1_ns_act"
    homes = {home_invoker("ns", f"ns/a{n}", 3) for n in range(50)}
    assert homes == {0, 1, 2} and home_invoker("ns", "ns/a1", 3) == home_invoker("ns", "ns/a1", 3)
    path.write_text("invokers: 2\nmonitor:\n  notification_sockets:\n    invoker2: /run/x\n")
    with pytest.raises(lw_config.ConfigError, match=r"monitor:notification_sockets:invoker2: no such invoker "
                                                    r"\(the invokers are invoker0, invoker1\)"):
        lw_config.load(path)
