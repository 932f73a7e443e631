"""Create real cgroups for tests, nested under this process's own cgroup."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from faasload.cgroup_self import memory_cgroup_version, own_cgroup_paths

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpuacct")


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
    return None


class CgroupFactory:
    """Creates cgroups (one directory per v1 controller, or one v2 directory) and removes them."""

    def __init__(self):
        self.version = version()
        self.created: list[Path] = []
        own = own_cgroup_paths()
        if self.version == 1:
            self.parents = {c: CGROUP_ROOT / c / own.get(c, "/").lstrip("/") for c in V1_CONTROLLERS}
        else:
            self.parents = {"": CGROUP_ROOT / own.get("", "/").lstrip("/")}

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
        for path in reversed(self.created):
            try:
                path.rmdir()
            except OSError:
                pass
        self.created.clear()
