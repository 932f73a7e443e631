"""monitor/kernel_peak.py and its wiring (registry, attribution, protocol, recorder) on fake cgroup trees.

A fake tree's files are regular files: a reset is seen as the reset text written at the start of
the file, and the test writes the value the kernel would then show.  The real counters are
tested by tests/test_kernel_peak_e2e.py (cgroup v1 here, v2 before Linux 6.12 in tests/vm/).
"""

import os
import shutil
from pathlib import Path

import pytest

from faasload.clock import FakeClock
from faasload.monitor_protocol import (
    NO_SAMPLES,
    ActivationAnswer,
    ActivationNotice,
    ActivationQuery,
    Boundary,
    ContainerNotice,
    KernelPeak,
    Lifecycle,
    PeakSource,
    ProtocolError,
    encode_activation,
    parse_answer,
)
from monitor import attribution, kernel_peak
from monitor.cgroups import CgroupV1Reader, CgroupV2Reader
from monitor.discovery import Discovery
from monitor.kernel_peak import LATE_RESET_S, PeakCounter
from monitor.registry import Registry

DATA = Path(__file__).parent / "fixtures_data"
DOCKER = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"
ACT, ACT2 = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
MIB = 1 << 20


def copy_tree(tmp_path, version):
    root = tmp_path / "cg"
    shutil.copytree(DATA / f"cgroup_v{version}", root)
    return version, root


@pytest.fixture(params=[1, 2])
def tree(request, tmp_path):
    return copy_tree(tmp_path, request.param)


@pytest.fixture
def v1_tree(tmp_path):
    return copy_tree(tmp_path, 1)


@pytest.fixture
def v2_tree(tmp_path):
    return copy_tree(tmp_path, 2)


def memory_dir(version, root):
    return root / "memory" / "docker" / DOCKER if version == 1 else root / "docker" / DOCKER


def peak_file(version, root):
    return memory_dir(version, root) / kernel_peak.PEAK_FILES[version]


def kernel_sets(path, value):
    """What the kernel would show after the activation allocated: its peak."""
    path.write_text(f"{value}\n")


# --------------------------------------------------------------------------- the counter

def test_v1_reset_at_start_and_read_at_end(v1_tree):
    version, root = v1_tree
    path = peak_file(1, root)
    path.write_text("9\n")
    counter = PeakCounter(path.parent, 1)
    watch = counter.begin()
    assert path.read_text() == "0\n"  # reset: "0" written
    kernel_sets(path, 48 * MIB)
    assert counter.end(watch) == KernelPeak(48 * MIB, PeakSource.ACTIVATION)


def test_v1_one_reset_at_a_time_then_unavailable_for_the_overlapping_one(v1_tree):
    version, root = v1_tree
    path = peak_file(1, root)
    counter = PeakCounter(path.parent, 1)
    first = counter.begin()
    kernel_sets(path, 30 * MIB)
    second = counter.begin()  # another activation while the first runs: no reset
    assert path.read_text() == f"{30 * MIB}\n"
    kernel_sets(path, 50 * MIB)
    assert counter.end(first) == KernelPeak(50 * MIB, PeakSource.ACTIVATION)  # covers its whole window
    assert counter.end(second) == kernel_peak.UNAVAILABLE  # the counter was reset before it started
    third = counter.begin()  # alone again: reset
    kernel_sets(path, 20 * MIB)
    assert counter.end(third) == KernelPeak(20 * MIB, PeakSource.ACTIVATION)


def test_v1_never_reset_is_since_creation(v1_tree, monkeypatch):
    version, root = v1_tree
    path = peak_file(1, root)
    late = PeakCounter(path.parent, 1)
    assert late.end(late.begin(late=True)) == KernelPeak(104857600, PeakSource.SINCE_CREATION)
    refused = PeakCounter(path.parent, 1)

    def no_write(fd, data, offset):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(kernel_peak.os, "pwrite", no_write)
    assert refused.end(refused.begin()) == KernelPeak(104857600, PeakSource.SINCE_CREATION)


def test_v2_resettable_per_open_file_even_for_activations_at_once(v2_tree):
    version, root = v2_tree
    path = peak_file(2, root)
    counter = PeakCounter(path.parent, 2)  # a regular file opens for writing: "resettable"
    first = counter.begin()
    assert first.scoped and first.fd is not None
    assert path.read_text().startswith("reset")
    second = counter.begin()
    assert second.scoped and second.fd not in (None, first.fd)
    kernel_sets(path, 40 * MIB)  # a fake file has one value for all its readers
    assert counter.end(first) == KernelPeak(40 * MIB, PeakSource.ACTIVATION)
    assert counter.end(second) == KernelPeak(40 * MIB, PeakSource.ACTIVATION)
    assert first.fd is None and second.fd is None  # closed


def test_v2_not_resettable_is_since_creation(v2_tree):
    version, root = v2_tree
    path = peak_file(2, root)
    counter = PeakCounter(path.parent, 2, resettable=False)
    watch = counter.begin()
    assert not watch.scoped and path.read_text() == "31461376\n"
    assert counter.end(watch) == KernelPeak(31461376, PeakSource.SINCE_CREATION)
    # a late start notice on a resettable kernel: the container's own file, since its creation
    late = PeakCounter(path.parent, 2)
    assert late.end(late.begin(late=True)) == KernelPeak(31461376, PeakSource.SINCE_CREATION)


def test_v2_on_a_kernel_that_refuses_the_write(v2_tree, monkeypatch):
    """Linux 5.19-6.11: memory.peak has no write handler, opening it for writing fails."""
    version, root = v2_tree
    path = peak_file(2, root)
    real_open = kernel_peak.open_regular

    def read_only(p, access=os.O_RDONLY):
        if access != os.O_RDONLY:
            raise PermissionError(13, "Permission denied")
        return real_open(p, access)
    monkeypatch.setattr(kernel_peak, "open_regular", read_only)
    counter = PeakCounter(path.parent, 2)
    assert counter.end(counter.begin()) == KernelPeak(31461376, PeakSource.SINCE_CREATION)
    assert counter.end(counter.begin()) == KernelPeak(31461376, PeakSource.SINCE_CREATION)


def test_no_counter_file_is_unavailable(tree):
    version, root = tree
    path = peak_file(version, root)
    path.unlink()
    counter = PeakCounter(path.parent, version)
    assert not counter.available
    assert counter.end(counter.begin()) == kernel_peak.UNAVAILABLE
    assert counter.unscoped() == kernel_peak.UNAVAILABLE


def test_closed_counter_reads_nothing(tree):
    version, root = tree
    path = peak_file(version, root)
    counter = PeakCounter(path.parent, version, resettable=False)
    watch = counter.begin()
    counter.close()
    assert counter.end(watch) == kernel_peak.UNAVAILABLE


# --------------------------------------------------------------------------- the registry

def build(version, root):
    clock = FakeClock(start_s=100.0, epoch_offset_s=1_700_000_000.0)
    reader = CgroupV1Reader(root) if version == 1 else CgroupV2Reader(root)
    return clock, Registry(reader, Discovery(reader), clock, resolution_s=0.01, maxage_s=600.0, retention_s=300.0)


def test_notices_reset_at_start_and_read_at_end(tree):
    version, root = tree
    clock, registry = build(version, root)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    path = peak_file(version, root)
    registry.apply(ActivationNotice(Boundary.START, DOCKER, ACT, clock.epoch_s()))
    assert path.read_text().startswith("0" if version == 1 else "reset")
    kernel_sets(path, 64 * MIB)
    assert registry.activation(ACT).kernel_peak == KernelPeak(64 * MIB, PeakSource.ACTIVATION)  # so far
    clock.advance(0.2)
    registry.apply(ActivationNotice(Boundary.END, DOCKER, ACT, clock.epoch_s()))
    kernel_sets(path, 99 * MIB)  # after the end: not this activation's
    assert registry.activation(ACT).kernel_peak == KernelPeak(64 * MIB, PeakSource.ACTIVATION)


def test_a_late_start_notice_does_not_reset(tree):
    version, root = tree
    clock, registry = build(version, root)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    path = peak_file(version, root)
    before = path.read_text()
    registry.apply(ActivationNotice(Boundary.START, DOCKER, ACT, clock.epoch_s() - LATE_RESET_S - 0.01))
    assert path.read_text() == before
    registry.apply(ActivationNotice(Boundary.END, DOCKER, ACT, clock.epoch_s()))
    assert registry.activation(ACT).kernel_peak == KernelPeak(int(before), PeakSource.SINCE_CREATION)


def test_attribution_gives_the_peak_since_creation(tree):
    version, root = tree
    clock, registry = build(version, root)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    registry.set_name(DOCKER, "wsk0_7_guest_hello")
    start_ms = round(clock.epoch_s() * 1000)
    clock.advance(0.1)
    query = ActivationQuery(ACT, "guest", "hello", start_ms, round(clock.epoch_s() * 1000))
    answer = attribution.answer(registry, query)
    assert answer.container == DOCKER
    expected = 104857600 if version == 1 else 31461376
    assert answer.kernel_peak == KernelPeak(expected, PeakSource.SINCE_CREATION)
    # once the counter was reset for a notice-bound activation, v1's is no longer since creation
    registry.apply(ActivationNotice(Boundary.START, DOCKER, ACT2, clock.epoch_s()))
    registry.apply(ActivationNotice(Boundary.END, DOCKER, ACT2, clock.epoch_s()))
    if version == 2:
        kernel_sets(peak_file(2, root), expected)  # a fake file shows its reset to every reader
    again = attribution.answer(registry, query).kernel_peak
    assert again.source is (PeakSource.UNAVAILABLE if version == 1 else PeakSource.SINCE_CREATION)


def test_removed_container_and_expired_binding_release_their_files(tree):
    version, root = tree
    clock, registry = build(version, root)
    registry.apply(ContainerNotice(Lifecycle.RUN, DOCKER))
    counter = registry.containers[DOCKER].peak
    registry.apply(ActivationNotice(Boundary.START, DOCKER, ACT, clock.epoch_s()))
    watch = registry.bindings[ACT].watch
    registry.apply(ContainerNotice(Lifecycle.RM, DOCKER))
    assert registry.containers[DOCKER].peak is None and not counter.available
    clock.advance(10_000)
    registry.housekeeping()
    assert ACT not in registry.bindings and watch.fd is None


# --------------------------------------------------------------------------- the wire and the recorder

def test_answer_carries_the_kernel_peak_and_an_older_answer_none():
    answer = ActivationAnswer(ACT, "c-1", 1.0, 2.0, NO_SAMPLES, KernelPeak(5 * MIB, PeakSource.SINCE_CREATION))
    assert parse_answer(encode_activation(answer)) == answer
    older = ActivationAnswer(ACT, "c-1", 1.0, 2.0, NO_SAMPLES)
    assert b"kernel_peak" not in encode_activation(older)
    assert parse_answer(encode_activation(older)).kernel_peak is None
    with pytest.raises(ProtocolError, match="kernel_peak 'source' must be one of activation, since_creation"):
        parse_answer(b'{"activation": "a", "container": "c", "samples": [], '
                     b'"kernel_peak": {"memory": 1, "source": "sampled"}}')
    with pytest.raises(ProtocolError, match="kernel_peak 'memory' must be an integer or null"):
        parse_answer(b'{"activation": "a", "container": "c", "samples": [], '
                     b'"kernel_peak": {"memory": 1.5, "source": "activation"}}')


def test_recorder_writes_the_kernel_peak_columns():
    from loader.monitor_client import MonitorAnswer, ResourcesStatus
    from loader.plan import PlannedInvocation
    from loader.storage.recorder import Recorder
    from loader.storage.rows import NO_SAMPLES as NO_ROWS
    from loader.storage.rows import ResourceSample, ResourceSamples, RunUpdate
    from loader.storage.summary import RunStats

    class Sink:
        def __init__(self):
            self.items = []

        def write(self, item, on_durable=None):
            self.items.append(item)

        def write_many(self, writes):
            self.items.extend(item for item, _ in writes)

    def recorded(answer):
        sink = Sink()
        recorder = Recorder(sink, 1, RunStats(10_000))
        invocation = PlannedInvocation("alice-hello", 0, 0, "alice", "hello", "", ())
        record = {"activationId": ACT, "start": 1_700_000_000_000, "end": 1_700_000_000_100,
                  "duration": 100, "response": {"status": "success", "statusCode": 0, "result": {}},
                  "annotations": []}
        recorder.completed(invocation, ACT, record, None, answer)
        (update,) = [i for i in sink.items if isinstance(i, RunUpdate)]
        return update.kernel_peak_memory_bytes, update.kernel_peak_source

    sample = ResourceSamples.of((ResourceSample(1_700_000_000_000_000, 10 * MIB, 0),))
    peak = KernelPeak(26 * MIB, PeakSource.ACTIVATION)
    assert recorded(MonitorAnswer(sample, ResourcesStatus.OK, kernel_peak=peak)) == (26 * MIB, "activation")
    assert recorded(MonitorAnswer(sample, ResourcesStatus.OK)) == (None, "unavailable")
    assert recorded(MonitorAnswer(NO_ROWS, ResourcesStatus.MONITOR_DOWN, "no socket")) == (None, "unavailable")
    assert recorded(None) == (None, None)  # the monitor is disabled
