"""Create real cgroups for tests, nested under this process's own cgroup.

cgroup v1: one directory per controller (memory, cpuacct) under this process's cgroups.

cgroup v2: children of this process's cgroup C, with memory, cpu and pids enabled in C.  As v2
forbids controllers in a cgroup that holds processes (the "no internal processes" rule), the
processes of C (the test process, and the shell or service process that started it) first move
into the leaf ``C/faasload-tests``, once per test process: the suite then works from a login
session, a systemd service or a container's root cgroup alike.  A test run started from inside
such a leaf uses its parent again (no nesting deeper at every run).
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

from faasload import cgroup_delegation as delegation
from faasload.cgroup_self import memory_cgroup_version, own_cgroup_paths

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpuacct")
#: v2: the leaf the test process (and the other processes of its cgroup) move into.
TEST_LEAF = "faasload-tests"


def version() -> int:
    """1 when the memory controller is mounted as v1, else 2."""
    return memory_cgroup_version(CGROUP_ROOT)


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "creating cgroups needs root"
    if version() == 1:
        for controller in V1_CONTROLLERS:
            if not os.access(CGROUP_ROOT / controller, os.W_OK):
                return f"cgroup v1 controller {controller} not writable"
        return None
    if not (CGROUP_ROOT / "cgroup.controllers").exists():
        return "no cgroup v1 memory controller and no cgroup v2 hierarchy"
    try:
        v2_parent()
    except (delegation.DelegationError, OSError) as exc:
        return f"cannot create cgroup v2 children with controllers: {exc}"
    return None


@functools.cache
def v2_parent() -> Path:
    """The cgroup whose children the tests create (v2), prepared once per test process."""
    own = delegation.own_cgroup(CGROUP_ROOT)
    if delegation.is_root_cgroup(own):
        delegation.enable_controllers(own)  # the root may hold processes
        return own
    parent = own.parent
    if own.name == TEST_LEAF and "memory" in (parent / "cgroup.subtree_control").read_text().split() \
            and not delegation.member_pids(parent):
        return parent  # started from a leaf an earlier run made
    delegation.evacuate(own, TEST_LEAF)
    delegation.enable_controllers(own)
    return own


class CgroupFactory:
    """Creates cgroups (one directory per v1 controller, or one v2 directory) and removes them."""

    def __init__(self):
        self.version = version()
        self.created: list[Path] = []
        if self.version == 1:
            own = own_cgroup_paths()
            self.parents = {c: CGROUP_ROOT / c / own.get(c, "/").lstrip("/") for c in V1_CONTROLLERS}
        else:
            self.parents = {"": v2_parent()}

    def create(self, name: str | None = None) -> dict[str, Path]:
        """A new cgroup; returns ``controller -> directory`` (key ``""`` on v2)."""
        name = name or f"faasload-test-{uuid.uuid4().hex[:8]}"
        dirs = {}
        for controller, parent in self.parents.items():
            path = parent / name
            path.mkdir()
            self.created.append(path)
            dirs[controller] = path
        return dirs

    def cleanup(self) -> None:
        """Remove the created cgroups, with the children a test process made in them."""
        for path in reversed(self.created):
            for directory, _, _ in sorted(os.walk(path), key=lambda entry: -len(Path(entry[0]).parts)):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass
        self.created.clear()


def join_command(directory: Path) -> list[str]:
    """A command prefix that moves the command into the v2 cgroup ``directory``, then execs it."""
    return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(directory)]


def needs_own_cgroup() -> bool:
    """Whether a process that must be alone in its cgroup (localwhisk's process backend) has to be
    given one: on v2 without systemd, which would otherwise give it a scope."""
    return version() == 2 and not delegation.systemd_running() and unavailable_reason() is None
