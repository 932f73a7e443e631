"""localwhisk's Docker backend with a real Docker daemon: names, memory limit, pause/unpause,
OOM, notifications with full container ids. Skipped (with the reason) without a daemon.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.notification_sink import NotificationSink
from tests.slowness import scaled_s

pytestmark = pytest.mark.docker

HELLO = "import os\ndef main(args):\n    print('hi from', os.environ['__OW_ACTIVATION_ID'])\n    " \
        "return {'storage': os.environ.get('FAASLOAD_STORAGE'), 'files': sorted(os.listdir(os.environ['FAASLOAD_STORAGE']))}\n"


def _auth(key: str) -> tuple[str, str]:
    return tuple(key.split(":", 1))


@pytest.fixture
def docker_api(docker_daemon):
    import docker
    client = docker.APIClient(base_url=docker_daemon)
    yield client
    client.close()


@pytest.fixture
def sink():
    directory = Path(tempfile.mkdtemp(prefix="lw-dnotif-", dir="/tmp"))
    sink = NotificationSink(directory / "notif")
    yield sink
    sink.close()


def _wait(predicate, timeout_s: float = 10.0):
    deadline = time.monotonic() + scaled_s(timeout_s)
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_docker_cold_warm_pause_and_names(localwhisk_factory, docker_api, sink):
    whisk = localwhisk_factory.start(backend="docker", notification_socket=str(sink.path),
                                     settings={"server:instance": 901})
    (whisk.storage_dir / "inputs").mkdir(parents=True, exist_ok=True)
    key = whisk.create_user("docker-user.one")
    whisk.deploy(key, "hello-world", HELLO, memory_mb=128)
    cold = requests.post(whisk.url("actions/hello-world?blocking=true"), auth=_auth(key), timeout=60)
    assert cold.status_code == 200, cold.text
    record = cold.json()
    assert record["response"]["result"] == {"storage": str(whisk.storage_dir), "files": ["inputs"]}
    annotations = {a["key"]: a["value"] for a in record["annotations"]}
    assert annotations["initTime"] > 0
    assert record["logs"][0].endswith(f"stdout: hi from {record['activationId']}")
    containers = [c for c in docker_api.containers(all=True) if any(n.startswith("/wsk901_") for n in c["Names"])]
    assert len(containers) == 1
    # OpenWhisk's ContainerProxy.containerName: namespace and action keep letters, digits and '_'
    assert containers[0]["Names"] == ["/wsk901_1_dockeruserone_helloworld"]
    container_id = containers[0]["Id"]
    info = docker_api.inspect_container(container_id)
    assert info["HostConfig"]["Memory"] == 128 * 1024 * 1024
    assert info["HostConfig"]["NetworkMode"] == "none"  # no network unless the action asks (docs/localwhisk.md)
    _wait(lambda: docker_api.inspect_container(container_id)["State"]["Paused"])  # paused after the grace
    warm = requests.post(whisk.url("actions/hello-world?blocking=true"), auth=_auth(key), timeout=60)
    assert warm.status_code == 200
    assert "initTime" not in {a["key"] for a in warm.json()["annotations"]}
    _wait(lambda: docker_api.inspect_container(container_id)["State"]["Paused"])
    _wait(lambda: [m["action"] for m in sink.messages if m.get("container") == container_id].count("pause") == 2)
    ours = [m for m in sink.messages if m.get("container") == container_id]
    actions = [m["action"] for m in ours]
    assert actions[:4] == ["run", "activation_start", "activation_end", "pause"]
    assert actions[4:8] == ["resume", "activation_start", "activation_end", "pause"]
    assert ours[1]["activation"] == record["activationId"]
    assert re.fullmatch(r"[0-9a-f]{64}", container_id)
    whisk.stop()
    _wait(lambda: [m["action"] for m in sink.messages if m.get("container") == container_id][-1] == "rm")
    assert not [c for c in docker_api.containers(all=True) if any(n.startswith("/wsk901_") for n in c["Names"])]
    assert [m["action"] for m in sink.messages if m.get("container") == container_id][-1] == "rm"


@pytest.mark.vm
def test_docker_memory_limit_is_developer_error(localwhisk_factory):
    whisk = localwhisk_factory.start(backend="docker")
    key = whisk.create_user("dockerhog")
    code = "def main(args):\n    hog = []\n    while True:\n        hog.append(bytearray(16 * 1024 * 1024))\n"
    whisk.deploy(key, "hog", code, memory_mb=128, timeout_ms=20000)
    started = time.monotonic()
    response = requests.post(whisk.url("actions/hog?blocking=true"), auth=_auth(key), timeout=60)
    assert response.status_code == 502
    assert response.json()["response"]["result"] == {"error": "The action exhausted its memory and was aborted."}
    assert time.monotonic() - started < scaled_s(20)
    whisk.deploy(key, "ok", "def main(args):\n    return {'ok': True}\n")
    assert requests.post(whisk.url("actions/ok?blocking=true&result=true"), auth=_auth(key),
                         timeout=60).json() == {"ok": True}
