"""Per-container cgroups for the process backend.

cgroup v1: one directory per controller (``memory``, ``cpuacct``) at the same relative path,
the memory controller's path of this process as the parent (``/process_api/<id>`` on these
machines): ``<own path>/localwhisk-<pid>/<container>``, so that the monitor can join the one
path with every controller mount (the ``cgroup`` of a notice, docs/monitor.md).

cgroup v2: a delegated subtree (:mod:`faasload.cgroup_delegation`).  localwhisk's own cgroup C
(when it is not delegated and systemd runs the host, first a scope ``localwhisk-<pid>.scope``
with ``Delegate=yes`` that it asks systemd for) must hold no other process; localwhisk moves
itself into the leaf ``C/server``, enables memory, cpu and pids in ``C`` and in
``C/localwhisk-<pid>``, and puts each container in its own child
``C/localwhisk-<pid>/<container>``.  In the root cgroup (no systemd, no cgroup namespace) it
stays where it is: the root may hold processes.  When this is impossible the error names the
file and the rule.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from faasload import cgroup_delegation as delegation
from faasload.cgroup_self import own_cgroup_paths
from faasload.errors import Failure

LOG = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpuacct")
#: v2: the leaf localwhisk moves itself into, in its own cgroup.
SERVER_LEAF = "server"


class CgroupUnavailable(Failure):
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
    """Creates and removes per-container cgroups below ``<parent>/localwhisk-<pid>``
    (see the module's docstring for the parent on v1 and v2)."""

    def __init__(self, root: Path = CGROUP_ROOT, *, systemd_scope: bool = True):
        self.root = root
        self.version = 1 if (root / "memory" / "memory.limit_in_bytes").exists() else 2
        pid = os.getpid()
        if self.version == 1:
            parent = own_cgroup_paths().get("memory", "/").rstrip("/")
        else:
            try:
                relative = self._v2_parent(systemd_scope).relative_to(root)
                parent = "/" if relative == Path(".") else f"/{relative}"
            except (delegation.DelegationError, OSError) as exc:
                raise CgroupUnavailable(str(exc)) from None
        self.base_path = f"{parent.rstrip('/')}/localwhisk-{pid}"
        controllers = V1_CONTROLLERS if self.version == 1 else ("",)
        self.bases = tuple(self._dir(c, self.base_path) for c in controllers)
        self._remove_stale()
        try:
            for directory in self.bases:
                directory.mkdir(parents=True, exist_ok=True)
            if self.version == 2:
                delegation.enable_controllers(self.bases[0])
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create cgroups under {self.bases[0]}: {exc}") from None
        except delegation.DelegationError as exc:
            raise CgroupUnavailable(str(exc)) from None

    def _v2_parent(self, systemd_scope: bool) -> Path:
        """This process's cgroup, made able to have children with controllers (module docstring)."""
        own = delegation.own_cgroup(self.root)
        pid = os.getpid()
        if delegation.is_root_cgroup(own):
            delegation.enable_controllers(own)
            return own
        if not delegation.is_delegated(own) and delegation.systemd_running():
            if systemd_scope:
                scope = delegation.request_scope(f"localwhisk-{pid}.scope")
                LOG.info("moved from %s, which systemd did not delegate, into the scope %s (Delegate=yes)", own, scope)
                own = scope
            else:
                LOG.warning("%s is not delegated by systemd (Delegate=yes): systemd may rewrite its "
                            "cgroup.subtree_control", own)
        others = [p for p in delegation.member_pids(own) if p != pid]
        if others:
            raise delegation.DelegationError(
                f"{own / 'cgroup.procs'} holds other processes than localwhisk ({', '.join(map(str, others[:5]))}): "
                f"{delegation.RULE_NO_INTERNAL_PROCESSES}; run localwhisk alone in its cgroup: a systemd unit with "
                "Delegate=yes, containers:systemd_scope: true on a systemd host, or a cgroup of its own")
        delegation.evacuate(own, SERVER_LEAF)
        delegation.enable_controllers(own)
        return own

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
