"""Docker events and freezer states into the registry, and attribution answers, on a v2 fixture
tree with a FakeClock (no Docker here: events are the dicts the docker SDK decodes)."""

import shutil
from pathlib import Path

import pytest

from faasload.clock import FakeClock
from faasload.monitor_protocol import (
    ActivationNotice,
    ActivationQuery,
    BatchQuery,
    Boundary,
    ContainerNotice,
    ErrorAnswer,
    ErrorCode,
    Lifecycle,
    ProtocolError,
    encode_query,
    parse_answer,
)
from monitor import attribution
from monitor.cgroups import CgroupV2Reader
from monitor.discovery import Discovery
from monitor.docker_events import DockerEvents, Recogniser, is_frozen
from monitor.handlers import Handlers
from monitor.registry import Registry, State
from monitor.sampler import Sampler
from monitor.servers import ReadOutcome

V2 = Path(__file__).parent / "fixtures_data" / "cgroup_v2"
A = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"
B = "5" * 64
ACT = "0123456789abcdef0123456789abcdef"
RES_S = 0.01


@pytest.fixture
def world(tmp_path):
    root = tmp_path / "cg"
    shutil.copytree(V2, root)
    shutil.copytree(root / "docker" / A, root / "docker" / B)
    for container in (A, B):
        (root / "docker" / container / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    clock = FakeClock(start_s=100.0, epoch_offset_s=1_700_000_000.0)
    reader = CgroupV2Reader(root)
    registry = Registry(reader, Discovery(reader), clock, resolution_s=RES_S, maxage_s=60.0, retention_s=30.0)
    events = DockerEvents(registry, lambda: None, clock)
    return root, clock, registry, events, Sampler(registry, clock, RES_S)


def event(action, container, name, at_s, **labels):
    return {"Type": "container", "Action": action, "status": action,
            "Actor": {"ID": container, "Attributes": {"name": name, "image": "x", **labels}},
            "time": int(at_s), "timeNano": int(at_s * 1e9)}


def test_recogniser_by_name_or_label():
    recognise = Recogniser(labels=("faasload.action", "owner=ow"))
    assert recognise("wsk0_3_guest_hello", {})
    assert not recognise("nginx", {})
    assert recognise("nginx", {"faasload.action": "hello"})
    assert recognise("x", {"owner": "ow"}) and not recognise("x", {"owner": "me"})


def test_freezer_contents():
    assert is_frozen(b"THAWED\n") is False
    assert is_frozen(b"FROZEN\n") is True and is_frozen(b"FREEZING\n") is True
    assert is_frozen(b"populated 1\nfrozen 1\n") is True
    assert is_frozen(b"populated 1\nfrozen 0\n") is False
    assert is_frozen(b"populated 1\n") is None


def test_events_drive_states_dated_by_the_daemon(world):
    _, clock, registry, events, _ = world
    t0 = clock.epoch_s()
    events.handle(event("create", A, "wsk0_1_guest_hello", t0))
    assert A not in registry.containers
    events.handle(event("start", A, "wsk0_1_guest_hello", t0 + 0.1))
    events.handle(event("pause", A, "wsk0_1_guest_hello", t0 + 0.5))
    events.handle(event("unpause", A, "wsk0_1_guest_hello", t0 + 0.8))
    events.handle(event("start", "9" * 64, "some_other_service", t0))  # not OpenWhisk: ignored
    entry = registry.containers[A]
    assert entry.state is State.RUNNING and entry.name == "wsk0_1_guest_hello"
    assert entry.intervals == [[pytest.approx(t0 + 0.1), pytest.approx(t0 + 0.5)], [pytest.approx(t0 + 0.8), None]]
    assert "9" * 64 not in registry.containers
    events.handle(event("die", A, "wsk0_1_guest_hello", t0 + 1.0))
    events.handle(event("destroy", A, "wsk0_1_guest_hello", t0 + 1.1))
    assert entry.state is State.REMOVED and entry.intervals[-1][1] == pytest.approx(t0 + 1.0)
    assert events.followed == {}


def test_same_container_from_socket_and_docker_is_one(world):
    _, clock, registry, events, _ = world
    registry.apply(ContainerNotice(Lifecycle.RUN, A[:12]))  # the socket announced a short id
    events.handle(event("start", A, "wsk0_1_guest_hello", clock.epoch_s()))
    assert list(registry.containers) == [A[:12]]
    assert registry.containers[A[:12]].name == "wsk0_1_guest_hello"
    assert len(registry.running) == 1


def test_sync_adds_running_and_removes_vanished(world):
    _, clock, registry, events, _ = world
    events.sync([{"Id": A, "Names": ["/wsk0_1_guest_hello"], "State": "running", "Labels": {}},
                 {"Id": B, "Names": ["/wsk0_2_guest_hello"], "State": "paused", "Labels": {}},
                 {"Id": "7" * 64, "Names": ["/postgres"], "State": "running", "Labels": {}}])
    assert registry.containers[A].state is State.RUNNING
    assert registry.containers[B].state is State.PAUSED
    assert set(registry.containers) == {A, B}
    events.sync([{"Id": B, "Names": ["/wsk0_2_guest_hello"], "State": "paused", "Labels": {}}])
    assert registry.containers[A].state is State.REMOVED
    assert set(events.followed) == {B}


def test_freezer_pause_behind_dockers_back_widens_the_running_stretch(world):
    root, clock, registry, events, _ = world
    events.handle(event("start", A, "wsk0_1_guest_hello", clock.epoch_s()))
    events.freezer.tick()
    started = registry.containers[A].intervals[0][0]
    clock.advance(1.0)
    (root / "docker" / A / "cgroup.events").write_text("populated 1\nfrozen 1\n")  # runc pause
    events.freezer.tick()
    paused_seen = clock.epoch_s()
    assert registry.containers[A].state is State.PAUSED and registry.running == ()
    clock.advance(1.0)
    events.freezer.tick()
    last_frozen = clock.epoch_s()
    clock.advance(1.0)
    (root / "docker" / A / "cgroup.events").write_text("populated 1\nfrozen 0\n")  # runc resume
    events.freezer.tick()
    assert registry.containers[A].state is State.RUNNING
    # paused at the first frozen read, resumed at the last frozen read: never narrower than the truth
    assert registry.containers[A].intervals == [[started, paused_seen], [last_frozen, None]]
    assert (events.freezer.pauses_seen, events.freezer.resumes_seen) == (1, 1)


def query(namespace="guest", action="hello", start_s=None, end_s=None):
    return ActivationQuery(ACT, namespace, action, None if start_s is None else round(start_s * 1000),
                           None if end_s is None else round(end_s * 1000))


def test_two_warm_containers_each_answer_their_own_activations(world):
    _, clock, registry, events, sampler = world
    t0 = clock.epoch_s()
    events.handle(event("start", A, "wsk0_1_guest_hello", t0))
    events.handle(event("start", B, "wsk0_2_guest_hello", t0))
    events.handle(event("pause", B, "wsk0_2_guest_hello", t0))
    for _ in range(50):  # A runs 0.5 s, B is paused
        clock.sleep_until(sampler.tick())
    events.handle(event("pause", A, "wsk0_1_guest_hello", clock.epoch_s()))
    events.handle(event("unpause", B, "wsk0_2_guest_hello", clock.epoch_s()))
    t1 = clock.epoch_s()
    for _ in range(50):
        clock.sleep_until(sampler.tick())
    got_a = attribution.answer(registry, query(start_s=t0 + 0.1, end_s=t0 + 0.4))
    got_b = attribution.answer(registry, query(start_s=t1 + 0.1, end_s=t1 + 0.4))
    assert (got_a.container, got_b.container) == (A, B)
    assert got_a.samples and all(t0 <= s.date_s <= t1 for s in got_a.samples)
    assert got_b.samples and all(s.date_s >= t1 - RES_S for s in got_b.samples)
    # both ran over this window: said so, never a guess
    events.handle(event("unpause", A, "wsk0_1_guest_hello", clock.epoch_s()))
    clock.advance(0.5)
    with pytest.raises(ProtocolError) as caught:
        attribution.answer(registry, query(start_s=clock.epoch_s() - 0.3, end_s=clock.epoch_s() - 0.1))
    assert caught.value.code is ErrorCode.AMBIGUOUS
    assert "2 containers that could run guest/hello were running" in str(caught.value)


def test_attribution_needs_every_hint_and_a_known_container(world):
    _, clock, registry, events, _ = world
    with pytest.raises(ProtocolError) as caught:
        attribution.answer(registry, ActivationQuery(ACT, "guest", "hello"))
    assert caught.value.code is ErrorCode.UNKNOWN_ACTIVATION
    assert str(caught.value) == (f"unknown activation {ACT}: no notice bound it to a container, and attribution "
                                 "needs 'start_ms', 'end_ms' in the query")
    with pytest.raises(ProtocolError) as caught:
        attribution.answer(registry, query(start_s=10.0, end_s=9.0))
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert str(caught.value) == "'end_ms' (9000) is before 'start_ms' (10000)"
    with pytest.raises(ProtocolError) as caught:
        attribution.answer(registry, query(start_s=clock.epoch_s(), end_s=clock.epoch_s()))
    assert caught.value.code is ErrorCode.UNKNOWN_ACTIVATION
    assert "no container named for guest/hello" in str(caught.value)


def test_old_running_stretches_are_trimmed_with_the_samples(world):
    _, clock, registry, events, _ = world
    for i in range(5):
        events.handle(event("unpause" if i else "start", A, "wsk0_1_guest_hello", clock.epoch_s()))
        clock.advance(1.0)
        events.handle(event("pause", A, "wsk0_1_guest_hello", clock.epoch_s()))
        clock.advance(20.0)
    registry.housekeeping()
    # maxage is 60 s; the stretches ended 104, 83, 62, 41 and 20 s ago: the first three are gone
    now = clock.epoch_s()
    assert [round(now - end) for _, end in registry.containers[A].intervals] == [41, 20]


def test_container_listed_paused_at_start_up_has_its_cgroup_and_a_baseline(world):
    """A monitor (re)started while a container is paused: it is ready to sample at once when it
    resumes, and its first activation has a sample from before its start (its frozen state)."""
    _, clock, registry, events, sampler = world
    events.sync([{"Id": A, "Names": ["/wsk0_1_guest_hello"], "State": "paused", "Labels": {}}])
    entry = registry.containers[A]
    assert entry.state is State.PAUSED and entry.handle is not None and len(entry.buffer) == 1
    listed_s = clock.epoch_s()
    clock.advance(1.0)
    sampler.tick()
    assert len(entry.buffer) == 1  # paused: not sampled
    events.handle(event("unpause", A, "wsk0_1_guest_hello", clock.epoch_s()))
    start_s = clock.epoch_s() + 0.001
    for _ in range(5):
        clock.advance(RES_S)
        sampler.tick()
    answer = attribution.answer(registry, query(start_s=start_s, end_s=start_s + 0.02))
    assert answer.container == A and answer.samples[0].date_s == pytest.approx(listed_s)
    assert len(answer.samples) >= 3


def test_activation_started_before_the_monitor_watched_is_monitor_down(world):
    _, clock, registry, events, sampler = world
    handlers = Handlers(registry, RES_S, clock.epoch_s)
    events.handle(event("start", A, "wsk0_1_guest_hello", clock.epoch_s()))
    before_s = clock.epoch_s() - 5.0
    handlers.watching_since_s = clock.epoch_s()

    def ask(q):
        return parse_answer(handlers.query(encode_query(q), ReadOutcome.COMPLETE))

    # unbound, for attribution: it started before the monitor watched
    down = ask(query(start_s=before_s, end_s=clock.epoch_s() + 0.01))
    assert isinstance(down, ErrorAnswer) and down.code is ErrorCode.MONITOR_DOWN
    assert "before the monitor watched" in down.error
    # bound by its end notice only (its start notice went to no monitor); in a batch too
    registry.apply(ActivationNotice(Boundary.END, A, ACT, clock.epoch_s() + 0.01))
    down = ask(query(start_s=before_s, end_s=clock.epoch_s() + 0.01))
    assert isinstance(down, ErrorAnswer) and down.code is ErrorCode.MONITOR_DOWN
    (in_batch,) = ask(BatchQuery((query(start_s=before_s, end_s=clock.epoch_s() + 0.01),))).answers
    assert isinstance(in_batch, ErrorAnswer) and in_batch.code is ErrorCode.MONITOR_DOWN
    # an activation that started once the monitor watched is answered
    registry.apply(ActivationNotice(Boundary.START, A, ACT, clock.epoch_s()))
    sampler.tick()
    clock.advance(RES_S)
    sampler.tick()
    answered = ask(query(start_s=clock.epoch_s() - RES_S, end_s=clock.epoch_s()))
    assert not isinstance(answered, ErrorAnswer) and answered.container == A
