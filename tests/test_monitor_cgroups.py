"""monitor/cgroups.py and monitor/discovery.py: fixture trees for v1 and v2, and real cgroups."""

import os
import shutil
from pathlib import Path

import pytest

from monitor.cgroups import (
    CgroupDirs,
    CgroupError,
    CgroupV1Reader,
    CgroupV2Reader,
    Reading,
    detect_version,
    make_reader,
)
from monitor.discovery import Discovery, DockerContainer, proc_cgroup_paths

DATA = Path(__file__).parent / "fixtures_data"
V1, V2 = DATA / "cgroup_v1", DATA / "cgroup_v2"
DOCKER = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"
SYSTEMD = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"
MIB = 1024 * 1024


def read(reader, dirs):
    handle = reader.open(dirs)
    try:
        return handle.read()
    finally:
        handle.close()


def test_version_detection(tmp_path):
    assert detect_version(V1) == 1
    assert detect_version(V2) == 2
    with pytest.raises(CgroupError, match="holds neither a cgroup v1 memory controller nor a cgroup v2"):
        detect_version(tmp_path)
    (tmp_path / "cgroup.controllers").write_text("cpu io pids\n")
    with pytest.raises(CgroupError, match="cgroup v2 hierarchy without the memory controller"):
        detect_version(tmp_path)


def test_v1_reader_on_fixture_tree():
    reader = make_reader(V1)
    assert isinstance(reader, CgroupV1Reader)
    reading = read(reader, reader.dirs({"": f"/docker/{DOCKER}"}))
    # memory.usage_in_bytes; total_rss + total_mapped_file (not rss + mapped_file); cpuacct.usage
    assert reading == Reading(52428800, 41943040 + 2097152, 1234567890)
    reading = read(reader, reader.dirs({"": "/process_api/abc/localwhisk/c-12"}))
    assert reading == Reading(4194304, 3145728 + 524288, 42000000)


def test_v1_per_controller_paths():
    reader = CgroupV1Reader(V1)
    dirs = reader.dirs({"memory": "/process_api/abc/localwhisk/c-12", "cpuacct": f"/docker/{DOCKER}"})
    assert dirs == CgroupDirs(V1 / "memory/process_api/abc/localwhisk/c-12", V1 / "cpuacct/docker" / DOCKER)
    assert read(reader, dirs) == Reading(4194304, 3145728 + 524288, 1234567890)


def test_v2_reader_on_fixture_tree():
    reader = make_reader(V2)
    assert isinstance(reader, CgroupV2Reader)
    reading = read(reader, reader.dirs({"": f"/system.slice/docker-{SYSTEMD}.scope"}))
    # memory.current; anon + file_mapped; cpu.stat usage_usec in ns
    assert reading == Reading(20971520, 16777216 + 524288, 2500000 * 1000)
    reading = read(reader, reader.dirs({"": "/user.slice/user-1000.slice/user@1000.service/localwhisk/c-7"}))
    assert reading == Reading(8388608, 6291456 + 262144, 12345000)


def test_failed_reads_are_none_never_zero():
    reader = CgroupV1Reader(V1)
    # unparsable usage, memory.stat without total_mapped_file, no cpuacct.usage file
    assert read(reader, reader.dirs({"": "/broken"})) == Reading(None, None, None)
    handle = reader.open(reader.dirs({"": f"/docker/{DOCKER}"}))
    handle.close()
    assert handle.read() == Reading(None, None, None)


def test_values_are_fresh_on_every_read(tmp_path):
    tree = tmp_path / "v2"
    shutil.copytree(V2, tree)
    reader = CgroupV2Reader(tree)
    dirs = reader.dirs({"": f"/docker/{DOCKER}"})
    handle = reader.open(dirs)
    first = handle.read()
    (dirs.memory / "memory.current").write_text("123\n")
    (dirs.cpu / "cpu.stat").write_text("usage_usec 7\nuser_usec 7\nsystem_usec 0\n")
    assert handle.read() == Reading(123, first.rss_mapped_bytes, 7000)
    handle.close()


@pytest.mark.parametrize("root, container, expected", [
    (V1, DOCKER, V1 / "memory/docker" / DOCKER),
    (V1, DOCKER[:12], V1 / "memory/docker" / DOCKER),
    (V1, SYSTEMD, V1 / f"memory/system.slice/docker-{SYSTEMD}.scope"),
    (V2, SYSTEMD, V2 / f"system.slice/docker-{SYSTEMD}.scope"),
    (V2, DOCKER[:12], V2 / "docker" / DOCKER),
])
def test_discovery_by_path_conventions(root, container, expected):
    dirs = Discovery(make_reader(root)).resolve(container, None)
    assert dirs.memory == expected


def test_discovery_hint_and_errors():
    discovery = Discovery(make_reader(V1))
    dirs = discovery.resolve("c-12", (("", "/process_api/abc/localwhisk/c-12"),))
    assert dirs.cpu == V1 / "cpuacct/process_api/abc/localwhisk/c-12"
    with pytest.raises(CgroupError, match=r"the notice's cgroup .*/memory/nowhere is not a directory"):
        discovery.resolve("c-13", (("", "/nowhere"),))
    with pytest.raises(CgroupError, match=r"no cgroup found for container 'deadbeef' \(tried path conventions"):
        discovery.resolve("deadbeef", None)


def test_discovery_through_docker_pid(tmp_path):
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cgroup").write_text(f"4:memory:/docker/{DOCKER}\n2:cpuacct:/docker/{DOCKER}\n0::/\n")
    assert proc_cgroup_paths(4242, proc)["memory"] == f"/docker/{DOCKER}"
    calls = []

    def inspect(container):
        calls.append(container)
        return DockerContainer(DOCKER, 4242) if container == "my-name" else None

    discovery = Discovery(make_reader(V1), inspect, proc_root=proc)
    assert discovery.resolve("my-name", None).memory == V1 / "memory/docker" / DOCKER
    with pytest.raises(CgroupError, match=r"tried Docker \(unknown id\); path conventions"):
        discovery.resolve("other", None)
    assert calls == ["my-name", "other"]


# --------------------------------------------------------------------------- real cgroups

@pytest.mark.cgroups
@pytest.mark.vm
def test_real_cgroup_memory_and_cpu_accuracy(cgroups, calibrated_child_factory):
    created = cgroups.create()
    root = Path("/sys/fs/cgroup")
    reader = make_reader(root)
    if reader.version == 1:
        dirs = CgroupDirs(created["memory"], created["cpuacct"])
    else:
        dirs = CgroupDirs(created[""], created[""])
    handle = reader.open(dirs)
    child = calibrated_child_factory([dirs.memory / "cgroup.procs"] + ([dirs.cpu / "cgroup.procs"] if dirs.cpu != dirs.memory else []))
    try:
        baseline = handle.read()
        # the child's memory from before the move stays charged to the parent (move_charge_at_immigrate 0)
        assert None not in (baseline.memory_bytes, baseline.rss_mapped_bytes, baseline.cpu_ns)
        size_mib = 64
        assert child.ask(f"alloc {size_mib}") == "allocated"
        allocated = handle.read()
        grown = allocated.memory_bytes - baseline.memory_bytes
        assert abs(grown - size_mib * MIB) <= 0.05 * size_mib * MIB, (grown, baseline, allocated)
        rss_grown = allocated.rss_mapped_bytes - baseline.rss_mapped_bytes
        assert abs(rss_grown - size_mib * MIB) <= 0.05 * size_mib * MIB
        burn_ms = 300
        before = handle.read().cpu_ns
        answer = child.ask(f"burn {burn_ms}")
        used_ns = handle.read().cpu_ns - before
        assert answer.startswith("burned ")
        assert abs(used_ns - burn_ms * 1e6) <= 0.05 * burn_ms * 1e6, used_ns
    finally:
        child.close()
        handle.close()


@pytest.mark.cgroups
def test_real_cgroup_v2_cpu_on_the_unified_hierarchy(cgroups, calibrated_child_factory):
    """This machine's v2 mount has no memory controller: CPU reads, memory reads are None."""
    unified = Path("/sys/fs/cgroup/unified")
    if not (unified / "cgroup.procs").exists() or not os.access(unified, os.W_OK):
        pytest.skip("no writable cgroup v2 hierarchy at /sys/fs/cgroup/unified")
    own = proc_cgroup_paths(os.getpid())[""]
    directory = unified / own.lstrip("/") / f"faasload-test-v2-{os.getpid()}"
    directory.mkdir()
    try:
        reader = CgroupV2Reader(unified)
        handle = reader.open(reader.dirs({"": "/" + str(directory.relative_to(unified))}))
        child = calibrated_child_factory([directory / "cgroup.procs"])
        try:
            before = handle.read()
            assert before.memory_bytes is None and before.rss_mapped_bytes is None
            child.ask("burn 200")
            used_ns = handle.read().cpu_ns - before.cpu_ns
            assert abs(used_ns - 200e6) <= 0.05 * 200e6, used_ns
        finally:
            child.close()
            handle.close()
    finally:
        directory.rmdir()
