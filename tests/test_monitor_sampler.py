"""monitor/sampler.py, monitor/registry.py, monitor/buffer.py driven by tick() and a FakeClock."""

import shutil
from pathlib import Path

import pytest

from faasload.clock import FakeClock
from faasload.monitor_protocol import (
    ActivationNotice,
    Boundary,
    ContainerNotice,
    ErrorCode,
    Lifecycle,
    ProtocolError,
    Sample,
)
from monitor.cgroups import CgroupV2Reader
from monitor.discovery import Discovery
from monitor.registry import Registry, State
from monitor.sampler import VANISHED_AFTER_FAILED_READS, Sampler

V2 = Path(__file__).parent / "fixtures_data" / "cgroup_v2"
DOCKER = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"
ACT = "0123456789abcdef0123456789abcdef"
RES_S = 0.01


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "cg"
    shutil.copytree(V2, root)
    return root


def build(tree, *, maxage_s=600.0, retention_s=300.0):
    clock = FakeClock(start_s=100.0, epoch_offset_s=1_700_000_000.0)
    reader = CgroupV2Reader(tree)
    registry = Registry(reader, Discovery(reader), clock, resolution_s=RES_S, maxage_s=maxage_s,
                        retention_s=retention_s)
    return clock, registry, Sampler(registry, clock, RES_S)


def run_ticks(clock, sampler, count, on_tick=None):
    for i in range(count):
        due = sampler.tick()
        if on_tick:
            on_tick(i)
        clock.sleep_until(due)


def set_values(tree, container, memory_bytes, usage_usec):
    directory = tree / "docker" / container
    (directory / "memory.current").write_text(f"{memory_bytes}\n")
    (directory / "cpu.stat").write_text(f"usage_usec {usage_usec}\nuser_usec 0\nsystem_usec 0\n")


def test_samples_on_absolute_deadlines_and_window_cpu_is_relative(tree):
    clock, registry, sampler = build(tree)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    start = clock.epoch_s()
    run_ticks(clock, sampler, 10, lambda i: set_values(tree, DOCKER, 1000 * (i + 1), 500 + 10 * (i + 1)))
    registered, *samples = registry.window(DOCKER, start, start + 1)
    assert registered.date_s == start  # sampled when its cgroup was found: the baseline
    assert len(samples) == 10
    assert [round(s.date_s - start, 6) for s in samples] == [round(i * RES_S, 6) for i in range(10)]
    # the first samples read the fixture's values; then the ones written after each tick
    assert registered.memory_bytes == samples[0].memory_bytes
    assert [s.memory_bytes for s in samples[1:]] == [1000 * i for i in range(1, 10)]
    assert [s.cpu_ns for s in samples] == [0] + [(500 + 10 * i) * 1000 - 750000 * 1000 for i in range(1, 10)]
    later = registry.window(DOCKER, samples[5].date_s, samples[8].date_s)
    assert [s.cpu_ns for s in later] == [0, 10000, 20000, 30000]
    assert len(registry.window(DOCKER, start + 50, start + 60)) == 0
    assert sampler.missed_deadlines == 0


def test_late_tick_skips_and_counts_missed_deadlines(tree, caplog):
    clock, registry, sampler = build(tree)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    run_ticks(clock, sampler, 3)
    clock.advance(0.035)  # the thread was descheduled for 35 ms
    due = sampler.tick()
    assert sampler.missed_deadlines == 3
    assert due == pytest.approx(100.0 + 7 * RES_S)  # still on the original grid
    assert "sampler missed 3 deadline(s) of 10.0 ms" in caplog.text


def test_no_sampling_while_paused_and_after_rm(tree):
    clock, registry, sampler = build(tree)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    run_ticks(clock, sampler, 5)
    registry.apply(ContainerNotice(Lifecycle.PAUSE, DOCKER))
    paused_at = clock.epoch_s()
    run_ticks(clock, sampler, 5)
    registry.apply(ContainerNotice(Lifecycle.RESUME, DOCKER))
    resumed_at = clock.epoch_s()
    run_ticks(clock, sampler, 5)
    registry.apply(ContainerNotice(Lifecycle.RM, DOCKER))
    run_ticks(clock, sampler, 5)
    samples = registry.window(DOCKER, 0, clock.epoch_s())
    assert len(samples) == 1 + 10  # at registration, then 5 ticks running, 5 resumed
    assert not [s for s in samples if paused_at <= s.date_s < resumed_at]
    entry = registry.containers[DOCKER]
    assert entry.state is State.REMOVED and entry.handle is None
    assert [[round(a - 1_700_000_100, 3), round(b - 1_700_000_100, 3)] for a, b in entry.intervals] == \
        [[0.0, 0.05], [0.1, 0.15]]


def test_removed_container_kept_for_retention_then_dropped(tree):
    clock, registry, sampler = build(tree, retention_s=5.0)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    registry.apply(ActivationNotice(Boundary.START, DOCKER, ACT, clock.epoch_s()))
    run_ticks(clock, sampler, 3)
    registry.apply(ContainerNotice(Lifecycle.RM, DOCKER))
    clock.advance(4.0)
    registry.housekeeping()
    assert len(registry.window(DOCKER, 0, clock.epoch_s())) == 1 + 3
    assert registry.activation(ACT).container == DOCKER
    clock.advance(2.0)
    registry.housekeeping()
    with pytest.raises(ProtocolError, match=f"unknown container '{DOCKER}'") as info:
        registry.window(DOCKER, 0, clock.epoch_s())
    assert info.value.code is ErrorCode.UNKNOWN_CONTAINER
    with pytest.raises(ProtocolError, match=f"unknown activation {ACT}"):
        registry.activation(ACT)


def test_bindings_expire_with_their_container_or_after_maxage_and_retention(tree):
    """Housekeeping finds what expires from the fronts of its queues: bindings of a container gone
    after retention, of a container never known (after retention), and of a live container after
    maxage + retention; younger ones and those of live containers stay."""
    clock, registry, _ = build(tree, maxage_s=20.0, retention_s=5.0)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    registry.apply(ContainerNotice(Lifecycle.RUN, "other"))
    on_removed = [f"r{i:031d}" for i in range(3)]
    on_live = [f"l{i:031d}" for i in range(3)]
    for activation in on_removed:
        registry.apply(ActivationNotice(Boundary.START, DOCKER, activation, clock.epoch_s()))
    for activation in on_live:
        registry.apply(ActivationNotice(Boundary.START, "other", activation, clock.epoch_s()))
    registry.apply(ActivationNotice(Boundary.START, "never-seen", "u" * 32, clock.epoch_s()))
    registry.apply(ContainerNotice(Lifecycle.RM, DOCKER))
    clock.advance(4.0)
    registry.housekeeping()
    assert set(registry.bindings) == {*on_removed, *on_live, "u" * 32}
    clock.advance(2.0)   # 6 s: past retention, the removed container and the unknown one are gone
    registry.housekeeping()
    assert set(registry.bindings) == set(on_live)
    registry.apply(ActivationNotice(Boundary.START, "other", "y" * 32, clock.epoch_s()))
    clock.advance(20.0)  # 26 s: the first three live bindings are older than maxage + retention
    registry.housekeeping()
    assert set(registry.bindings) == {"y" * 32}
    assert list(registry.containers["other"].bound) == ["y" * 32]
    with pytest.raises(ProtocolError, match=f"unknown activation {on_live[0]}"):
        registry.activation(on_live[0])


def test_activation_answer_brackets_its_window(tree):
    clock, registry, sampler = build(tree)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    run_ticks(clock, sampler, 5)
    start = clock.epoch_s() - 0.005  # between two samples
    registry.apply(ActivationNotice(Boundary.START, DOCKER, ACT, start))
    run_ticks(clock, sampler, 3, lambda i: set_values(tree, DOCKER, 5000, 1000 * (i + 1)))
    end = clock.epoch_s() - 0.005
    registry.apply(ActivationNotice(Boundary.END, DOCKER, ACT, end))
    run_ticks(clock, sampler, 5)
    answer = registry.activation(ACT)
    assert (answer.start_s, answer.end_s, answer.container) == (start, end, DOCKER)
    dates = [s.date_s for s in answer.samples]
    assert dates[0] < start < dates[1] and dates[-2] < end < dates[-1]
    assert len(answer.samples) == 5  # one before, the three inside, one after
    assert answer.samples[0].cpu_ns == 0
    assert answer.samples[-1].cpu_ns == 3000 * 1000 - 750000 * 1000


def test_an_end_not_announced_yet_is_the_records_end_when_the_query_gives_it(tree):
    # the loader can ask before the monitor has handled the end notice (a loaded machine): the
    # answer then ends at the record's end, not at the time of the query
    clock, registry, sampler = build(tree)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    start = clock.epoch_s() + 0.005
    registry.apply(ActivationNotice(Boundary.START, DOCKER, ACT, start))
    run_ticks(clock, sampler, 4)
    end = clock.epoch_s() - 0.005
    run_ticks(clock, sampler, 100)  # one second later, still no end notice
    hinted = registry.activation(ACT, end_hint_s=end)
    assert hinted.end_s is None
    dates = [s.date_s for s in hinted.samples]
    assert dates[0] <= start and dates[-2] < end < dates[-1] and len(dates) == 5
    assert len(registry.activation(ACT).samples) > 100  # no hint: up to now
    registry.apply(ActivationNotice(Boundary.END, DOCKER, ACT, end))
    assert registry.activation(ACT).samples == hinted.samples


def test_ambiguous_and_unknown_activation(tree):
    clock, registry, _ = build(tree)
    registry.apply(ActivationNotice(Boundary.START, "a", ACT, clock.epoch_s()))
    with pytest.raises(ProtocolError, match="container 'a', which the monitor never saw run") as info:
        registry.activation(ACT)
    assert info.value.code is ErrorCode.UNKNOWN_CONTAINER
    registry.apply(ActivationNotice(Boundary.END, "b", ACT, clock.epoch_s()))
    with pytest.raises(ProtocolError, match="announced in several containers: a, b") as info:
        registry.activation(ACT)
    assert info.value.code is ErrorCode.AMBIGUOUS


def test_duplicate_run_is_one_container(tree):
    clock, registry, sampler = build(tree)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    run_ticks(clock, sampler, 2)
    assert len(registry.running) == 1 and sampler.samples_taken == 2


def test_unresolved_container_is_retried_then_given_up(tree, caplog):
    clock, registry, sampler = build(tree)
    registry.apply(ContainerNotice(Lifecycle.RUN, "late-one", (("", "/localwhisk/late-one"),)))
    assert "late-one/memory.current" not in caplog.text
    assert "is not a directory; retrying" in caplog.text
    assert registry.running == ()
    (tree / "localwhisk" / "late-one").mkdir(parents=True)
    for name in ("memory.current", "memory.stat", "cpu.stat"):
        shutil.copy(tree / "docker" / DOCKER / name, tree / "localwhisk" / "late-one" / name)
    registry.housekeeping()
    assert len(registry.window("late-one", 0, clock.epoch_s())) == 1  # sampled once found
    run_ticks(clock, sampler, 1)
    assert len(registry.window("late-one", 0, clock.epoch_s())) == 2
    registry.apply(ContainerNotice(Lifecycle.RUN, "never", (("", "/nowhere"),)))
    clock.advance(31)
    registry.housekeeping()
    assert registry.containers["never"].state is State.REMOVED
    assert "container never: giving up, no cgroup" in caplog.text


def test_vanished_cgroup_is_treated_as_removed(tree, caplog):
    clock, registry, sampler = build(tree)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    for name in ("memory.current", "memory.stat", "cpu.stat"):
        (tree / "docker" / DOCKER / name).write_text("gone\n")
    run_ticks(clock, sampler, VANISHED_AFTER_FAILED_READS)
    assert registry.containers[DOCKER].state is State.REMOVED
    registered, *samples = registry.window(DOCKER, 0, clock.epoch_s())
    assert registered.memory_bytes is not None  # found while its files were still readable
    assert samples[0] == Sample(samples[0].date_s, None, None, None)  # not measured, never 0
    assert "reads of its cgroup failed in a row; treated as removed" in caplog.text


def test_memory_stat_is_read_every_nth_tick_only(tree):
    """rss_mapped is measured on a container's samples 0, N, 2N...; None (not measured) in between, never 0."""
    clock, registry, _ = build(tree)
    sampler = Sampler(registry, clock, RES_S, stat_every=3)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    start = clock.epoch_s()
    run_ticks(clock, sampler, 7)
    samples = registry.window(DOCKER, start, start + 1)
    # the sample at registration is its 1st; the ticks take the 2nd to the 8th
    assert [s.rss_mapped_bytes is not None for s in samples] == [True, False, False, True, False, False, True, False]
    assert all(s.memory_bytes is not None and s.cpu_ns is not None for s in samples)


def test_container_first_seen_paused_gets_one_sample_then_the_sampler_takes_over(tree):
    clock, registry, sampler = build(tree)
    start = clock.epoch_s()
    registry.apply(ContainerNotice(Lifecycle.PAUSE, DOCKER))
    run_ticks(clock, sampler, 3)  # paused: not the sampler's
    frozen = registry.window(DOCKER, start, start + 1)
    assert len(frozen) == 1 and frozen[0].memory_bytes is not None and frozen[0].rss_mapped_bytes is not None
    registry.apply(ContainerNotice(Lifecycle.RESUME, DOCKER))
    run_ticks(clock, sampler, 3)
    samples = registry.window(DOCKER, start, start + 1)
    assert len(samples) == 4
    assert [s.date_s for s in samples] == sorted(s.date_s for s in samples)


def test_a_removed_containers_files_are_closed_by_the_sampler_between_sweeps(tree):
    """A notice's thread never closes a handle the sampler may be reading: the descriptor could be
    reused by another container's open and read as the wrong file.  The sampler closes it at
    the start of its next sweep."""
    clock, registry, sampler = build(tree)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    run_ticks(clock, sampler, 1)
    handle = registry.containers[DOCKER].handle
    assert handle is not None and not handle.closed
    registry.apply(ContainerNotice(Lifecycle.RM, DOCKER))
    assert registry.running == () and registry.containers[DOCKER].handle is None
    assert not handle.closed  # a sweep that started before the rm may still read it
    run_ticks(clock, sampler, 1)
    assert handle.closed


def test_registry_close_closes_released_handles_too(tree):
    clock, registry, sampler = build(tree)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    run_ticks(clock, sampler, 1)
    handle = registry.containers[DOCKER].handle
    registry.apply(ContainerNotice(Lifecycle.RM, DOCKER))
    registry.close()
    assert handle is not None and handle.closed
