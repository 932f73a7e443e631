"""The process backend: each container is a runtime proxy process in its own cgroup.

The proxy is started through ``/bin/sh`` that first writes its own pid into the cgroup's
``cgroup.procs`` files and then ``exec``s Python, so the interpreter is charged to the
container from its first page (``move_charge_at_immigrate`` is 0).  When cgroups cannot be
created, the backend does not start (:class:`CgroupUnavailable` names the file and the rule);
with ``containers:cgroups: false`` the processes run unconfined (a warning at start-up, no
memory limit, no measurements).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from ..cgroups import Cgroup, CgroupManager, CgroupUnavailable
from . import LogBuffer, pump_lines, wait_for_port_file

LOG = logging.getLogger(__name__)
PROXY = Path(__file__).resolve().parent.parent / "runtime" / "proxy.py"


class ProcessContainer:
    def __init__(self, cid: str, name: str, process: subprocess.Popen, cgroup: Cgroup | None,
                 workdir: Path, manager: CgroupManager | None):
        self.id = cid
        self.name = name
        self.process = process
        self.port = 0
        self.socket_path: str | None = None
        self.cgroup_obj = cgroup
        self.cgroup = cgroup.path if cgroup else None
        self.workdir = workdir
        self.logs = LogBuffer()
        self._manager = manager
        self._readers = [threading.Thread(target=self._read, args=(stream, pipe), daemon=True,
                                          name=f"logs-{cid}-{stream}")
                         for stream, pipe in (("stdout", process.stdout), ("stderr", process.stderr))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: str, pipe) -> None:
        try:
            pump_lines(iter(lambda: pipe.read1(65536), b""), lambda text: self.logs.feed(stream, text))
        finally:
            self.logs.close(stream)

    def alive(self) -> bool:
        return self.process.poll() is None

    def pause(self) -> None:  # processes are not frozen (see docs/localwhisk.md)
        pass

    def resume(self) -> None:
        pass

    def oom_kills(self) -> int | None:
        return self.cgroup_obj.oom_kills() if self.cgroup_obj else None

    def destroy(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            LOG.warning("container %s: process %d did not exit", self.id, self.process.pid)
        for reader in self._readers:
            reader.join(1.0)
        if self.cgroup_obj is not None and self._manager is not None:
            self._manager.remove(self.cgroup_obj)
        shutil.rmtree(self.workdir, ignore_errors=True)


class ProcessBackend:
    name = "process"
    supports_pause = False

    def __init__(self, run_dir: Path, *, python: str, use_cgroups: bool, start_timeout_s: float,
                 systemd_scope: bool = True):
        self.run_dir = run_dir
        self.python = python
        self.start_timeout_s = start_timeout_s
        self._counter = 0
        self._lock = threading.Lock()
        self.manager: CgroupManager | None = None
        self.warning: str | None = None
        if use_cgroups:
            try:
                self.manager = CgroupManager(systemd_scope=systemd_scope)
            except CgroupUnavailable as exc:
                raise CgroupUnavailable(f"{exc} (containers:cgroups: false runs actions as plain processes, "
                                        "without memory limits or measurements)") from None
        else:
            self.warning = "action processes run WITHOUT memory limits (containers:cgroups is false)"

    def create(self, name: str, memory_mb: int, env: dict[str, str], network: bool = False) -> ProcessContainer:
        """A proxy process; ``network`` changes nothing (processes share the host's network)."""
        with self._lock:
            self._counter += 1
            cid = f"localwhisk-{os.getpid()}-{self._counter}"
        workdir = self.run_dir / cid
        workdir.mkdir(parents=True)
        port_file = workdir / "port"
        cgroup = self.manager.create(cid, memory_mb * 1024 * 1024) if self.manager else None
        command = [self.python, str(PROXY), "--port-file", str(port_file), "--parent-pid", str(os.getpid())]
        if cgroup is not None:
            joins = " && ".join(f"echo $$ > {shlex.quote(str(f))}" for f in cgroup.procs_files)
            command = ["/bin/sh", "-c", f'{joins} && exec "$0" "$@"'] + command
        child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(workdir),
                     "TMPDIR": str(workdir)}
        child_env.update(env)
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=child_env, cwd=workdir, start_new_session=True)
        container = ProcessContainer(cid, name, process, cgroup, workdir, self.manager)
        try:
            container.port = wait_for_port_file(port_file, time.monotonic() + self.start_timeout_s, container.alive)
        except Exception:
            container.destroy()
            raise
        return container

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()
