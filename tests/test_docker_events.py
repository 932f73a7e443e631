"""Docker-events discovery with real Docker and real cgroups, no socket notification at all.

A script imitates OpenWhisk's invoker: ``docker run -d --name wsk0_<n>_<ns>_<action>``, then
``docker pause``/``unpause`` (invoker with runc off) or ``runc pause``/``resume`` behind Docker's
back (the invoker's default), ``docker rm -f``.  The monitor's registry, sampler and
:class:`DockerEvents` run in this process on the real cgroup hierarchy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from faasload.clock import RealClock
from faasload.monitor_protocol import ActivationQuery, ErrorCode, ProtocolError
from monitor import attribution
from monitor.cgroups import CgroupError, make_reader
from monitor.discovery import Discovery, docker_inspector
from monitor.docker_events import DockerEvents, client_factory
from monitor.registry import Registry, State
from monitor.sampler import Sampler
from tests.docker_images import tiny_image
from tests.slowness import scaled_s

pytestmark = pytest.mark.docker
RES_S = 0.01
ACT = "fedcba9876543210fedcba9876543210"


def wait_for(predicate, timeout_s=10.0, what="condition"):
    deadline = time.monotonic() + scaled_s(timeout_s)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Invoker:
    """Runs the docker (and runc) command lines OpenWhisk's invoker runs."""

    def __init__(self, base_url: str, image: str):
        self.env = dict(os.environ, DOCKER_HOST=base_url)
        self.image = image
        self.tag = uuid.uuid4().hex[:6]
        self.count = 0
        self.created: list[str] = []
        self.runc_root = None

    def docker(self, *argv: str) -> str:
        result = subprocess.run(["docker", *argv], env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def run(self, namespace: str, action: str) -> tuple[str, str]:
        self.count += 1
        name = f"wsk0_{self.count}_{namespace}{self.tag}_{action}"
        container = self.docker("run", "-d", "--network", "none", "-v", "/usr:/usr:ro", "--name", name,
                                self.image, "/usr/bin/sleep", "120")
        self.created.append(container)
        return container, name

    def runc(self, verb: str, container: str) -> None:
        if self.runc_root is None:
            # Docker's runc root is <exec-root>/runtime-runc/moby: under /run by default, beside
            # the socket for the daemons our scripts start (faasload/dockerd.py)
            roots = [Path("/run")]
            host = self.env.get("DOCKER_HOST", "")
            if host.startswith("unix://"):
                roots.insert(0, Path(host[len("unix://"):]).parent)
            found = [p for root in roots for p in root.rglob(f"runtime-runc/moby/{container}/state.json")]
            if not found or shutil.which("runc") is None:
                pytest.skip("runc state of Docker's containers not found")
            self.runc_root = str(found[0].parent.parent)
        subprocess.run(["runc", "--root", self.runc_root, verb, container], check=True)

    def cleanup(self) -> None:
        for container in self.created:
            subprocess.run(["docker", "rm", "-f", container], env=self.env, capture_output=True)


@pytest.fixture
def invoker(docker_daemon, tmp_path):
    if shutil.which("docker") is None:
        pytest.skip("docker CLI not installed")
    env = dict(os.environ, DOCKER_HOST=docker_daemon)
    invoker = Invoker(docker_daemon, tiny_image(shutil.which("docker"), env, tmp_path, "faasload-test/events-tiny:1"))
    yield invoker
    invoker.cleanup()


@pytest.fixture
def monitor(docker_daemon):
    """The monitor's registry + sampler + Docker events, on the real cgroup hierarchy."""
    try:
        reader = make_reader(Path("/sys/fs/cgroup"))
    except CgroupError as exc:
        pytest.skip(f"no usable cgroup hierarchy: {exc}")
    clock = RealClock()
    registry = Registry(reader, Discovery(reader, docker_inspector(docker_daemon)), clock,
                        resolution_s=RES_S, maxage_s=120.0, retention_s=60.0)
    sampler = Sampler(registry, clock, RES_S)
    stop = threading.Event()
    sampler_thread = threading.Thread(target=sampler.run, args=(stop,), daemon=True)
    sampler_thread.start()
    events = DockerEvents(registry, client_factory(docker_daemon), clock, freezer_period_s=0.005)
    events.start()
    wait_for(events.connected.is_set, what="the Docker event stream")
    yield registry, events
    events.stop()
    stop.set()
    sampler_thread.join()
    registry.close()


def samples_of(registry, container):
    return len(registry.containers[container].buffer)


def check_not_sampled_while_paused(registry, container):
    """No sample is taken while paused: the count is stable over many resolutions."""
    before = samples_of(registry, container)
    time.sleep(20 * RES_S)
    assert samples_of(registry, container) - before <= 1  # at most the read racing the pause


@pytest.mark.vm
def test_invoker_lifecycle_is_discovered_and_sampled_only_while_running(monitor, invoker):
    registry, events = monitor
    container, name = invoker.run("guest", "hello")
    invoker.docker("run", "-d", "--network", "none", "-v", "/usr:/usr:ro", "--name", f"notwhisk-{invoker.tag}",
                   invoker.image, "/usr/bin/sleep", "120")
    invoker.created.append(invoker.docker("ps", "-q", "--no-trunc", "-f", f"name=notwhisk-{invoker.tag}"))
    wait_for(lambda: container in registry.containers and registry.containers[container].handle is not None,
             what="the container to be discovered")
    entry = registry.containers[container]
    assert entry.name == name and entry.state is State.RUNNING
    assert invoker.created[-1] not in registry.containers  # not an OpenWhisk name: ignored
    wait_for(lambda: samples_of(registry, container) >= 10, what="samples")
    first = registry.window(container, 0, time.time() + 1)[0]
    assert first.memory_bytes is not None and first.memory_bytes > 0 and first.cpu_ns == 0

    invoker.docker("pause", container)  # docker pause: an event
    wait_for(lambda: entry.state is State.PAUSED, what="docker pause")
    check_not_sampled_while_paused(registry, container)
    invoker.docker("unpause", container)
    wait_for(lambda: entry.state is State.RUNNING, what="docker unpause")
    count = samples_of(registry, container)
    wait_for(lambda: samples_of(registry, container) >= count + 5, what="samples after unpause")

    invoker.runc("pause", container)  # runc pause: no Docker event, only the freezer says it
    wait_for(lambda: entry.state is State.PAUSED, what="runc pause")
    check_not_sampled_while_paused(registry, container)
    invoker.runc("resume", container)
    wait_for(lambda: entry.state is State.RUNNING, what="runc resume")
    count = samples_of(registry, container)
    wait_for(lambda: samples_of(registry, container) >= count + 5, what="samples after resume")

    invoker.docker("rm", "-f", container)
    wait_for(lambda: entry.state is State.REMOVED, what="rm -f")
    assert registry.window(container, 0, time.time() + 1)  # kept for the retention time
    assert len(entry.intervals) == 3 and all(end is not None for _, end in entry.intervals)


def test_containers_running_before_start_and_after_a_lost_stream_are_found(docker_daemon, invoker, monitor):
    registry, events = monitor
    events.stop()  # start over: containers exist before the monitor looks
    early, _ = invoker.run("guest", "early")
    invoker.docker("pause", early)
    fresh = DockerEvents(registry, client_factory(docker_daemon), RealClock())
    fresh.start()
    try:
        wait_for(lambda: early in registry.containers and registry.containers[early].state is State.PAUSED,
                 what="the paused container listed at start-up")
        fresh._close_stream()  # the stream breaks (daemon restart): reconnect, list again
        later, _ = invoker.run("guest", "later")
        wait_for(lambda: later in registry.containers and registry.containers[later].state is State.RUNNING,
                 what="a container started while the stream was down")
        assert fresh.reconnects >= 1
    finally:
        fresh.stop()


def test_unreachable_daemon_is_retried_never_fatal(monitor):
    registry, _ = monitor
    attempts = []

    def broken():
        attempts.append(time.monotonic())
        raise ConnectionError("no daemon here")

    events = DockerEvents(registry, broken, RealClock())
    events.start()
    wait_for(lambda: len(attempts) >= 2, what="a second attempt")
    events.stop()
    assert attempts[1] - attempts[0] >= 0.4  # backed off
    assert not events.connected.is_set()


def activation_in(invoker, container, run_s=0.15):
    """What the invoker does around one activation: resume, run, pause; returns its window (ms)."""
    invoker.runc("resume", container)
    start_ms = int(time.time() * 1000)
    time.sleep(run_s)
    end_ms = int(time.time() * 1000)
    time.sleep(0.05)  # pauseGrace
    invoker.runc("pause", container)
    return start_ms, end_ms


def test_attribution_picks_the_right_warm_container_or_says_ambiguous(monitor, invoker):
    registry, _ = monitor
    first, _ = invoker.run("guest", "resize")
    second, _ = invoker.run("guest", "resize")
    namespace = f"guest{invoker.tag}"
    for container in (first, second):
        wait_for(lambda: container in registry.containers and registry.containers[container].handle is not None,
                 what="discovery")
        invoker.runc("pause", container)
        wait_for(lambda: registry.containers[container].state is State.PAUSED, what="pause")
    windows = [(first, activation_in(invoker, first)), (second, activation_in(invoker, second)),
               (first, activation_in(invoker, first))]
    for container, (start_ms, end_ms) in windows:
        answer = attribution.answer(registry, ActivationQuery(ACT, namespace, "resize", start_ms, end_ms))
        assert answer.container == container
        inside = [s for s in answer.samples if start_ms / 1000 <= s.date_s <= end_ms / 1000]
        assert len(inside) >= 5
    # both warm containers running at once: explicit, never a guess
    invoker.runc("resume", first)
    invoker.runc("resume", second)
    wait_for(lambda: all(registry.containers[c].state is State.RUNNING for c in (first, second)), what="resume")
    start_ms = int(time.time() * 1000) + 1
    time.sleep(0.05)
    with pytest.raises(ProtocolError) as caught:
        attribution.answer(registry, ActivationQuery(ACT, namespace, "resize", start_ms, int(time.time() * 1000)))
    assert caught.value.code is ErrorCode.AMBIGUOUS
    with pytest.raises(ProtocolError) as caught:
        attribution.answer(registry, ActivationQuery(ACT, namespace, "other", start_ms, start_ms + 10))
    assert caught.value.code is ErrorCode.UNKNOWN_ACTIVATION


def sampled(handle, container) -> bool:
    answer = handle.query({"container": container, "start": 0, "end": time.time() + 1})
    return isinstance(answer, list) and len(answer) > 0


def test_daemon_answers_activation_queries_by_attribution(monitor_factory, docker_daemon, invoker):
    """``python -m monitor`` with Docker events on and no notification: queries by activation
    with namespace, action, start and end get the right container's samples, or 'ambiguous'."""
    handle = monitor_factory.start(docker={"enabled": True}, discovery={"docker_url": docker_daemon})
    first, _ = invoker.run("guest", "thumb")
    second, _ = invoker.run("guest", "thumb")
    namespace = f"guest{invoker.tag}"
    for container in (first, second):
        wait_for(lambda: sampled(handle, container), what="samples of a discovered container")
        invoker.runc("pause", container)
        wait_for(lambda: f"container {container} frozen: paused" in handle.log_text(), what="pause seen")
    for container in (second, first):
        start_ms, end_ms = activation_in(invoker, container)
        answer = handle.query({"activation": ACT, "namespace": namespace, "action": "thumb",
                               "start_ms": start_ms, "end_ms": end_ms})
        assert answer["container"] == container, answer
        inside = [s for s in answer["samples"] if start_ms / 1000 <= s["date"] <= end_ms / 1000]
        assert len(inside) >= 5 and all(s["memory"] for s in inside)
    invoker.runc("resume", first)
    invoker.runc("resume", second)
    for container in (first, second):
        wait_for(lambda: f"container {container} thawed: running" in handle.log_text(), what="resume seen")
    time.sleep(0.1)  # the window below must lie wholly after both resumes (each interval must contain it)
    now_ms = int(time.time() * 1000)
    answer = handle.query({"activation": ACT, "namespace": namespace, "action": "thumb",
                           "start_ms": now_ms - 5, "end_ms": now_ms})
    assert answer["code"] == "ambiguous" and "2 containers that could run" in answer["error"]
    answer = handle.query({"activation": ACT})
    assert answer["code"] == "unknown_activation"
    assert "attribution needs 'namespace', 'action', 'start_ms', 'end_ms'" in answer["error"]
