"""Find or start a Docker daemon (for localwhisk's Docker backend, the demo and the tests).

:func:`start` runs the ``docker.io`` package's ``dockerd`` with its own data and exec roots, the
``vfs`` storage driver, no iptables rules and no bridge network, so that it needs nothing else
from the host (its containers use the ``host`` network).

``python -m faasload.dockerd ensure ROOT`` prints the URL of a daemon that answers
(``$DOCKER_HOST``, else ``/var/run/docker.sock``), or starts one under ROOT and prints its URL
and pid (for the caller to stop it): ``unix:///path [PID]``. Exit 1 with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .procs import ServiceError, stop_pid, wait_until


def ping(base_url: str, timeout_s: float = 2.0) -> bool:
    """Whether a Docker API answers at ``base_url`` (``unix:///path``)."""
    try:
        import docker
        client = docker.DockerClient(base_url=base_url, timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure means "not reachable"  # noqa: BLE001
        return False


def default_base_url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


@dataclass
class Dockerd:
    """A daemon we started; ``base_url`` is what ``DOCKER_HOST`` should be."""

    base_url: str
    pid: int

    def stop(self) -> None:
        stop_pid(self.pid, timeout_s=20)


def cgroup_driver(base_url: str, timeout_s: float = 5.0) -> str:
    """The daemon's cgroup driver: ``cgroupfs`` or ``systemd``."""
    import docker
    client = docker.APIClient(base_url=base_url, timeout=timeout_s)
    try:
        return str(client.info()["CgroupDriver"])
    finally:
        client.close()


def start(root: Path, *, timeout_s: float = 30.0, cgroup_driver: str | None = None) -> Dockerd:
    """Start ``dockerd`` with its data, exec root and socket under ``root`` (and the given
    ``cgroup_driver``, ``cgroupfs`` or ``systemd``; default: dockerd's own choice)."""
    binary = shutil.which("dockerd")
    if binary is None:
        raise ServiceError("dockerd not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise ServiceError("starting dockerd needs root")
    root.mkdir(parents=True, exist_ok=True)
    config = root / "daemon.json"  # not the host's /etc/docker/daemon.json: its keys would clash with ours
    config.write_text("{}\n")
    sock = root / "docker.sock"
    base_url = f"unix://{sock}"
    log = root / "dockerd.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [binary, "--config-file", str(config), "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "--pidfile", str(root / "dockerd.pid"), "-H", base_url, "--storage-driver", "vfs",
             "--iptables=false", "--ip6tables=false", "--bridge=none",
             *([f"--exec-opt=native.cgroupdriver={cgroup_driver}"] if cgroup_driver else [])],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    wait_until(lambda: ping(base_url), timeout_s=timeout_s, what="dockerd", process=process,
               log_path=str(log), poll_s=0.1)
    return Dockerd(base_url, process.pid)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "ensure":
        print("usage: python -m faasload.dockerd ensure ROOT", file=sys.stderr)
        return 2
    if ping(default_base_url()):
        print(default_base_url())
        return 0
    try:
        started = start(Path(argv[1]))
    except ServiceError as exc:
        print(f"dockerd: {exc}", file=sys.stderr)
        return 1
    print(started.base_url, started.pid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
