"""The monitor finds real Docker containers' cgroups from their ids or names (no cgroup in the notice),
under both of Docker's cgroup drivers (cgroupfs: ``docker/<id>``; systemd:
``system.slice/docker-<id>.scope``) where they can run."""

import os
import shutil
import time
import uuid

import pytest

from tests import cgroup_helpers
from tests.docker_images import tiny_image
from tests.slowness import scaled_s

pytestmark = [pytest.mark.docker, pytest.mark.vm]


def wait_for(predicate, timeout_s=10.0, what="condition"):
    deadline = time.monotonic() + scaled_s(timeout_s)
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture(params=["cgroupfs", "systemd"])
def daemon(request, docker_daemon_by_driver):
    """The base URL of a daemon with the cgroup driver of the parameter."""
    return docker_daemon_by_driver(request.param)


@pytest.fixture
def container(daemon, tmp_path):
    docker = pytest.importorskip("docker")
    if shutil.which("docker") is None:
        pytest.skip("docker CLI not installed")
    image = tiny_image(shutil.which("docker"), dict(os.environ, DOCKER_HOST=daemon), tmp_path,
                       "faasload-test/monitor-tiny:1")
    client = docker.DockerClient(base_url=daemon)
    created = client.containers.run(image, ["/usr/bin/sleep", "120"], detach=True, network_mode="none",
                                    volumes={"/usr": {"bind": "/usr", "mode": "ro"}},
                                    name=f"faasload-monitor-test-{uuid.uuid4().hex[:8]}")
    yield created
    created.remove(force=True)
    client.close()


def cgroup_of(container) -> str:
    """Where the container's driver put its memory cgroup, as the monitor's log names it."""
    driver = container.client.info()["CgroupDriver"]
    relative = f"docker/{container.id}" if driver == "cgroupfs" else f"system.slice/docker-{container.id}.scope"
    return f"/sys/fs/cgroup/{'memory/' if cgroup_helpers.version() == 1 else ''}{relative}"


def samples_since(monitor, container_ref, start_s):
    return monitor.query({"container": container_ref, "start": start_s, "end": time.time() + 1})


def test_docker_name_resolved_through_the_daemon_and_pause_stops_sampling(monitor_factory, daemon, container):
    monitor = monitor_factory.start(discovery={"docker": True, "docker_url": daemon},
                                    logging={"root": {"level": "INFO"}})
    monitor.notify({"action": "run", "container": container.name})
    samples = wait_for(lambda: samples_since(monitor, container.name, 0), what="samples")
    assert samples[0]["memory"] is not None and samples[0]["cpu"] == 0 and samples[0]["rss_mapped"] is not None
    container.pause()
    monitor.notify({"action": "pause", "container": container.name})
    paused_at = time.time()
    time.sleep(0.2)
    assert samples_since(monitor, container.name, paused_at + 0.02) == []
    container.unpause()
    monitor.notify({"action": "resume", "container": container.name})
    resumed_at = time.time()
    wait_for(lambda: samples_since(monitor, container.name, resumed_at), what="samples after resume")
    assert f"sampling {cgroup_of(container)}" in monitor.log_text()


def test_docker_short_id_resolved_by_path_conventions(monitor_factory, container):
    monitor = monitor_factory.start(discovery={"docker": False}, logging={"root": {"level": "INFO"}})
    short = container.id[:12]
    monitor.notify({"action": "run", "container": short})
    samples = wait_for(lambda: samples_since(monitor, short, 0), what="samples")
    assert samples[-1]["memory"] is not None
    assert f"sampling {cgroup_of(container)}" in monitor.log_text()  # the full id's cgroup directory
    monitor.notify({"action": "rm", "container": short})
    assert samples_since(monitor, short, 0)  # kept for the retention time after rm
