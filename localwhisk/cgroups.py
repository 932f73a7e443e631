"""Per-container cgroups for the process backend, nested under this process's own cgroup.

cgroup v1: one directory per controller (``memory``, ``cpuacct``) at the same relative path,
the memory controller's path of this process as the parent (``/process_api/<id>`` on these
machines), so that the monitor can join the one path with every controller mount
(the ``cgroup`` of a notice, docs/monitor.md). cgroup v2: one directory under this process's unified cgroup.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from faasload.cgroup_self import own_cgroup_paths

LOG = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpuacct")


class CgroupUnavailable(RuntimeError):
    """Cgroups cannot be created here (the reason is the message)."""


@dataclass(frozen=True, slots=True)
class Cgroup:
    """One container's cgroup: ``path`` as the monitor joins it, ``dirs`` the real directories."""

    path: str
    dirs: tuple[Path, ...]
    version: int

    @property
    def procs_files(self) -> tuple[Path, ...]:
        return tuple(d / "cgroup.procs" for d in self.dirs)

    def oom_kills(self) -> int | None:
        """Processes the OOM killer killed in this cgroup so far (None when unreadable)."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            text = (self.dirs[0] / name).read_text()
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return None


class CgroupManager:
    """Creates and removes per-container cgroups below ``<own path>/localwhisk-<pid>``."""

    def __init__(self, root: Path = CGROUP_ROOT):
        self.root = root
        self.version = 1 if (root / "memory" / "memory.limit_in_bytes").exists() else 2
        own = own_cgroup_paths()
        base = (own.get("memory", "/") if self.version == 1 else own.get("", "/")).rstrip("/")
        self.base_path = f"{base}/localwhisk-{os.getpid()}"
        controllers = V1_CONTROLLERS if self.version == 1 else ("",)
        self.bases = tuple(self._dir(c, self.base_path) for c in controllers)
        self._remove_stale()
        try:
            for directory in self.bases:
                directory.mkdir(parents=True, exist_ok=True)
            if self.version == 2:
                self._enable_v2_controllers()
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create cgroups under {self.bases[0]}: {exc}") from None

    def _remove_stale(self) -> None:
        """Remove empty cgroups left by localwhisk processes that died (SIGKILL)."""
        for base in self.bases:
            if not base.parent.is_dir():
                continue
            for stale in base.parent.glob("localwhisk-*"):
                pid = stale.name.removeprefix("localwhisk-")
                if not pid.isdigit() or Path(f"/proc/{pid}").exists():
                    continue
                for child in stale.iterdir():
                    if child.is_dir():
                        try:
                            child.rmdir()
                        except OSError:
                            pass
                try:
                    stale.rmdir()
                    LOG.info("removed the stale cgroup %s", stale)
                except OSError:
                    pass

    def _dir(self, controller: str, path: str) -> Path:
        return (self.root / controller if controller else self.root) / path.lstrip("/")

    def _enable_v2_controllers(self) -> None:
        """v2: memory/cpu must be enabled in the parents' ``cgroup.subtree_control``."""
        base = self.bases[0]
        for parent in (base.parent, base):
            try:
                (parent / "cgroup.subtree_control").write_text("+memory +cpu")
            except OSError as exc:
                raise CgroupUnavailable(f"cannot enable the memory controller in {parent}: {exc}") from None

    def create(self, name: str, memory_bytes: int) -> Cgroup:
        path = f"{self.base_path}/{name}"
        dirs = []
        controllers = V1_CONTROLLERS if self.version == 1 else ("",)
        for controller in controllers:
            directory = self._dir(controller, path)
            directory.mkdir()
            dirs.append(directory)
        memory_dir = dirs[0]
        if self.version == 1:
            (memory_dir / "memory.limit_in_bytes").write_text(str(memory_bytes))
            memsw = memory_dir / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # no swap beyond the limit, as Docker's --memory-swap = --memory
                memsw.write_text(str(memory_bytes))
        else:
            (memory_dir / "memory.max").write_text(str(memory_bytes))
            swap = memory_dir / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
        return Cgroup(path, tuple(dirs), self.version)

    def remove(self, cgroup: Cgroup, timeout_s: float = 2.0) -> None:
        """Remove the directories once their processes are gone (retry briefly)."""
        deadline = time.monotonic() + timeout_s
        for directory in reversed(cgroup.dirs):
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        LOG.warning("cannot remove cgroup %s: %s", directory, exc)
                        break
                    time.sleep(0.01)

    def close(self) -> None:
        for directory in reversed(self.bases):
            try:
                directory.rmdir()
            except OSError:
                pass
