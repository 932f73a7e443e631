"""The Docker backend: each container is a real Docker container running the runtime proxy.

* Image: built locally (no registry) with ``docker import`` of a tiny rootfs holding only the
  merged-usr links and empty directories; containers run the host's ``/usr/bin/python3``
  with ``/usr`` and ``/etc`` bind-mounted read-only (no image registry needs to be reachable).
* ``--memory`` = ``--memory-swap`` = the action's memory; the storage directory bind-mounted
  at the same path.
* Isolated as OpenWhisk isolates actions, and more: a non-root user (``containers:docker_user``),
  ``--cap-drop ALL``, ``no-new-privileges``, ``--pids-limit``, and no network (``none``)
  unless the action is annotated ``network: true`` (then ``containers:docker_network``).  The
  proxy therefore listens on a UNIX socket in a private directory bind-mounted from the host
  (``/tmp/localwhisk-sockets-*/<n>``, short enough for a socket path, owned by the action's user).
* Names as OpenWhisk's invoker gives them (``wsk<instance>_<n>_<namespace>_<action>``); at
  start-up, leftover localwhisk containers with this instance's prefix are removed, as the
  invoker does.
* Logs are read with ``docker logs --follow --timestamps`` per stream.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import shutil
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from . import ContainerError, LogBuffer, pump_lines, wait_for_socket

LOG = logging.getLogger(__name__)
RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"
LABEL = "localwhisk"
SOCKET_NAME = "proxy.sock"
_CGROUP_CANDIDATES = ("/docker/{id}", "/system.slice/docker-{id}.scope")


def rootfs_tar() -> bytes:
    """A rootfs with only the merged-usr links and empty mount points."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in (("usr", 0o755), ("etc", 0o755), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755),
                           ("tmp", 0o1777), ("root", 0o700)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)
        for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            info = tarfile.TarInfo(link)
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 0
            tar.addfile(info)
    return buffer.getvalue()


def _normalize_timestamp(stamp: str) -> str:
    """Docker trims trailing zeros of the nanoseconds; pad to 9 digits so lines sort by time."""
    head, dot, frac = stamp.rstrip("Z").partition(".")
    return f"{head}.{(frac if dot else '').ljust(9, '0')[:9]}Z"


def _find_cgroup(container_id: str, cgroup_root: Path = Path("/sys/fs/cgroup")) -> tuple[str | None, Path | None]:
    """(cgroup path as the monitor joins it, the memory directory) of a container, if found."""
    for pattern in _CGROUP_CANDIDATES:
        path = pattern.format(id=container_id)
        for memory_root in (cgroup_root / "memory", cgroup_root):
            directory = memory_root / path.lstrip("/")
            if directory.is_dir():
                return path, directory
    return None, None


class DockerContainer:
    def __init__(self, backend: DockerBackend, container_id: str, name: str, workdir: Path):
        self.backend = backend
        self.id = container_id
        self.name = name
        self.port = 0
        self.socket_path: str | None = str(workdir / SOCKET_NAME)
        self.workdir = workdir
        self.logs = LogBuffer()
        self.cgroup, self._memory_dir = _find_cgroup(container_id)
        import docker
        self._log_client = docker.APIClient(base_url=backend.base_url, timeout=None)
        self._readers = [threading.Thread(target=self._read, args=(stream,), daemon=True,
                                          name=f"logs-{container_id[:12]}-{stream}") for stream in ("stdout", "stderr")]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: str) -> None:
        def on_line(text: str) -> None:
            stamp, _, rest = text.partition(" ")
            self.logs.feed(stream, rest, _normalize_timestamp(stamp))
        try:
            chunks = self._log_client.logs(self.id, stdout=stream == "stdout", stderr=stream == "stderr",
                                           stream=True, follow=True, timestamps=True)
            pump_lines(chunks, on_line)
        except Exception as exc:  # noqa: BLE001 (the container went away: the stream ends)
            LOG.debug("log stream %s of %s ended: %s", stream, self.id[:12], exc)
        finally:
            self.logs.close(stream)

    def alive(self) -> bool:
        try:
            return bool(self.backend.api.inspect_container(self.id)["State"]["Running"])
        except Exception:  # noqa: BLE001
            return False

    def pause(self) -> None:
        self.backend.api.pause(self.id)

    def resume(self) -> None:
        self.backend.api.unpause(self.id)

    def oom_kills(self) -> int | None:
        if self._memory_dir is not None:
            for name in ("memory.oom_control", "memory.events"):
                try:
                    text = (self._memory_dir / name).read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        try:
            return int(bool(self.backend.api.inspect_container(self.id)["State"]["OOMKilled"]))
        except Exception:  # noqa: BLE001
            return None

    def destroy(self) -> None:
        try:
            self.backend.api.remove_container(self.id, force=True)
        except Exception as exc:  # noqa: BLE001
            if "No such container" not in str(exc):
                raise ContainerError(f"cannot remove container {self.id[:12]}: {exc}") from exc
        for reader in self._readers:
            reader.join(2.0)
        self._log_client.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class DockerBackend:
    name = "docker"
    supports_pause = True

    def __init__(self, base_url: str, *, storage_dir: Path, image: str, python: str, start_timeout_s: float,
                 instance: int = 0, user: tuple[int, int] = (65534, 65534), network: str = "bridge",
                 pids_limit: int = 1024):
        import docker
        self.base_url = base_url
        self.api = docker.APIClient(base_url=base_url, timeout=60, max_pool_size=64)
        self.storage_dir = storage_dir
        self.image = image
        self.python = python
        self.start_timeout_s = start_timeout_s
        self.prefix = f"wsk{instance}_"
        self.user = user
        self.network = network
        self.pids_limit = pids_limit
        self.warning: str | None = None
        self._counter = itertools.count(1)
        self._ensure_image()
        self._remove_leftovers()
        # a short private root for the proxies' sockets (a socket path has at most 107 bytes)
        self.run_dir = Path(tempfile.mkdtemp(prefix="localwhisk-sockets-", dir="/tmp"))

    def _ensure_image(self) -> None:
        if self.api.images(name=self.image):
            return
        repository, _, tag = self.image.rpartition(":")
        if not repository:
            repository, tag = self.image, "latest"
        LOG.info("building the runtime image %s (docker import of a merged-usr rootfs)", self.image)
        self.api.import_image_from_data(rootfs_tar(), repository=repository, tag=tag)

    def _remove_leftovers(self) -> None:
        for item in self.api.containers(all=True, filters={"label": LABEL}):
            names = [n.lstrip("/") for n in item.get("Names") or []]
            if any(n.startswith(self.prefix) for n in names):
                LOG.info("removing leftover container %s", names[0])
                try:
                    self.api.remove_container(item["Id"], force=True)
                except Exception as exc:  # noqa: BLE001
                    LOG.warning("cannot remove leftover container %s: %s", names[0], exc)

    def _binds(self, workdir: Path) -> dict[str, dict[str, str]]:
        binds = {"/usr": {"bind": "/usr", "mode": "ro"}, "/etc": {"bind": "/etc", "mode": "ro"}}
        for path, mode in ((RUNTIME_DIR, "ro"), (workdir, "rw"), (self.storage_dir, "rw")):
            text = str(path)
            if not any(text == b or text.startswith(b + "/") for b in ("/usr", "/etc")):
                binds[text] = {"bind": text, "mode": mode}
        return binds

    def _workdir(self) -> Path:
        """A fresh directory for one container's socket, 0700 and owned by the action's user."""
        workdir = self.run_dir / str(next(self._counter))
        workdir.mkdir(mode=0o700)
        uid, gid = self.user
        if (os.geteuid(), os.getegid()) != (uid, gid):
            os.chown(workdir, uid, gid)  # as root; a non-root localwhisk runs actions as itself
        return workdir

    def create(self, name: str, memory_mb: int, env: dict[str, str], network: bool = False) -> DockerContainer:
        workdir = self._workdir()
        socket_path = workdir / SOCKET_NAME
        host_config = self.api.create_host_config(
            network_mode=self.network if network else "none", mem_limit=f"{memory_mb}m",
            memswap_limit=f"{memory_mb}m", binds=self._binds(workdir), cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"], pids_limit=self.pids_limit)
        uid, gid = self.user
        try:
            created = self.api.create_container(
                self.image, [self.python, str(RUNTIME_DIR / "proxy.py"), "--socket", str(socket_path)],
                name=name, environment=dict(env, HOME="/tmp"), host_config=host_config, labels={LABEL: "1"},
                working_dir="/tmp", user=f"{uid}:{gid}")
            self.api.start(created["Id"])
        except Exception as exc:  # noqa: BLE001
            shutil.rmtree(workdir, ignore_errors=True)
            raise ContainerError(f"cannot start container {name}: {exc}") from exc
        container = DockerContainer(self, created["Id"], name, workdir)
        try:
            wait_for_socket(socket_path, time.monotonic() + self.start_timeout_s, container.alive)
        except Exception:
            container.destroy()
            raise
        return container

    def close(self) -> None:
        self.api.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
