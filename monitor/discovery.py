"""Container id → cgroup directories (kept apart from accounting, which is monitor/cgroups.py).

In order of preference:

1. the ``cgroup`` path the notice carried (localwhisk always sends it): joined with every v1
   controller mount or with the v2 root, or one path per controller;
2. the Docker daemon, when reachable: ``docker inspect`` gives the full id and the main pid,
   whose ``/proc/<pid>/cgroup`` names the exact cgroup of each controller;
3. path conventions of Docker's cgroup drivers, with the id or a unique id prefix:
   cgroupfs ``docker/<id>``, systemd ``system.slice/docker-<id>.scope`` (v1: under each
   controller mount; v2: under the root).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .cgroups import CgroupDirs, CgroupError

log = logging.getLogger(__name__)

#: Where Docker's drivers put a container's cgroup, relative to a controller mount (v1) or the root (v2).
DOCKER_PATTERNS = ("docker/{id}", "system.slice/docker-{id}.scope")


class Reader(Protocol):
    root: Path
    version: int
    controllers: tuple[str, ...]

    def dirs(self, paths: dict[str, str]) -> CgroupDirs: ...


@dataclass(frozen=True, slots=True)
class DockerContainer:
    """What Docker says of a container."""

    full_id: str
    pid: int | None


#: ``inspect(container_id) -> DockerContainer | None``: None when Docker does not know the id.
DockerInspect = Callable[[str], "DockerContainer | None"]


def proc_cgroup_paths(pid: int, proc_root: Path = Path("/proc")) -> dict[str, str]:
    """``controller -> path`` of a process (``""`` for the v2 unified hierarchy)."""
    paths: dict[str, str] = {}
    for line in (proc_root / str(pid) / "cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in (controllers.split(",") if controllers else [""]):
            paths[controller] = path
    return paths


class Discovery:
    def __init__(self, reader: Reader, docker_inspect: DockerInspect | None = None,
                 proc_root: Path = Path("/proc")):
        self.reader = reader
        self.docker_inspect = docker_inspect
        self.proc_root = proc_root

    def resolve(self, container: str, hint: tuple[tuple[str, str], ...] | None) -> CgroupDirs:
        """The cgroup directories of ``container``; raises :class:`CgroupError` with the reason."""
        if hint is not None:
            dirs = self.reader.dirs(dict(hint))
            self._check_exists(dirs, f"the notice's cgroup {dict(hint)}")
            return dirs
        tried = []
        full_id = container
        if self.docker_inspect is not None:
            found = self._from_docker(container)
            if isinstance(found, CgroupDirs):
                return found
            if isinstance(found, str):
                full_id = found
                tried.append("Docker (pid not usable)")
            else:
                tried.append("Docker (unknown id)")
        dirs = self._from_conventions(full_id)
        if dirs is not None:
            return dirs
        tried.append("path conventions " + ", ".join(DOCKER_PATTERNS))
        raise CgroupError(f"no cgroup found for container {container!r} (tried {'; '.join(tried)})")

    def _check_exists(self, dirs: CgroupDirs, what: str) -> None:
        for directory in dict.fromkeys((dirs.memory, dirs.cpu)):
            if not directory.is_dir():
                raise CgroupError(f"{what}: {directory} is not a directory")

    def _from_docker(self, container: str) -> CgroupDirs | str | None:
        try:
            info = self.docker_inspect(container)
        except Exception as exc:  # the daemon went away: fall back to conventions  # noqa: BLE001
            log.debug("docker inspect %s failed: %s", container, exc)
            return None
        if info is None:
            return None
        if info.pid:
            try:
                dirs = self.reader.dirs(proc_cgroup_paths(info.pid, self.proc_root))
                self._check_exists(dirs, f"pid {info.pid}")
                return dirs
            except (OSError, ValueError, CgroupError) as exc:
                log.debug("cgroup of container %s from pid %s: %s", container, info.pid, exc)
        return info.full_id

    def _from_conventions(self, container: str) -> CgroupDirs | None:
        for pattern in DOCKER_PATTERNS:
            path = "/" + pattern.format(id=container)
            try:
                dirs = self.reader.dirs({"": path})
            except CgroupError:
                continue
            if dirs.memory.is_dir() and dirs.cpu.is_dir():
                return dirs
            # a short id: a unique prefix match among the memory cgroup's siblings
            parent = dirs.memory.parent
            prefix = dirs.memory.name.split(".scope")[0]
            if parent.is_dir():
                matches = [p for p in parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]
                if len(matches) == 1:
                    relative = "/" + str(matches[0].relative_to(self._memory_mount()))
                    full = self.reader.dirs({"": relative})
                    if full.cpu.is_dir():
                        return full
        return None

    def _memory_mount(self) -> Path:
        return self.reader.root / "memory" if self.reader.version == 1 else self.reader.root


def docker_inspector(base_url: str, timeout_s: float = 2.0) -> DockerInspect | None:
    """An inspect function over the docker SDK, or None when no daemon answers at ``base_url``."""
    try:
        import docker
        import docker.errors
        client = docker.DockerClient(base_url=base_url, timeout=timeout_s)
        client.ping()
    except Exception as exc:  # no daemon, no SDK: discovery falls back to conventions  # noqa: BLE001
        log.info("no Docker daemon at %s (%s): Docker ids resolve by path conventions only", base_url, exc)
        return None

    def inspect(container: str) -> DockerContainer | None:
        try:
            attrs = client.api.inspect_container(container)
        except docker.errors.NotFound:
            return None
        return DockerContainer(attrs["Id"], (attrs.get("State") or {}).get("Pid") or None)

    return inspect
