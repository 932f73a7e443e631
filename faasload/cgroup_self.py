"""Where this process sits in the cgroup hierarchies (to nest cgroups under its own)."""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def own_cgroup_paths(proc_file: Path = Path("/proc/self/cgroup")) -> dict[str, str]:
    """``controller -> path`` from /proc/self/cgroup (key ``""`` is the v2 unified hierarchy)."""
    paths = {}
    for line in proc_file.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in (controllers.split(",") if controllers else [""]):
            paths[controller] = path
    return paths


def memory_cgroup_version(root: Path = CGROUP_ROOT) -> int:
    """1 when the memory controller is mounted as cgroup v1 under ``root``, else 2."""
    return 1 if (root / "memory" / "memory.usage_in_bytes").exists() else 2
