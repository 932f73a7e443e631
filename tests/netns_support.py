"""Several "hosts" on one machine: network namespaces joined by veth pairs on a private subnet.

:class:`TestNetwork` creates a ``hub`` namespace holding a bridge and one namespace per node, each
with a veth pair whose two ends are created directly inside the namespaces (nothing is added to
the machine's own namespace, no address outside the namespaces made here).  The subnet is
``10.<a>.<b>.0/24`` with ``a.b`` drawn from the test's pid; inside the namespaces it conflicts
with nothing.  :meth:`TestNetwork.inside` switches the calling *thread* into a namespace with
``setns(2)`` (processes it starts are born there) and back; unlike ``ip netns exec`` this keeps
the mount namespace, so ``/sys/fs/cgroup`` stays visible to the monitors.  :meth:`remove` deletes
the namespaces, and with them every interface and address.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def unavailable_reason() -> str | None:
    """Why namespaces cannot be built here (None when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"flprobe{os.getpid()}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"ip netns add failed: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


class TestNetwork:
    """A hub namespace with a bridge, and nodes each linked to it by a veth pair."""

    __test__ = False  # not a test class

    def __init__(self, nodes: list[str]):
        pid = os.getpid()
        self.prefix = f"fl{pid % 100000}"
        self.subnet = f"10.{200 + pid % 50}.{pid // 50 % 250}"
        self.hub = f"{self.prefix}-hub"
        self.nodes = {name: f"{self.prefix}-{name}" for name in nodes}
        self.addresses = {"hub": f"{self.subnet}.1"}
        self._created: list[str] = []
        try:
            self._build(nodes)
        except BaseException:
            self.remove()
            raise

    def _add(self, namespace: str) -> None:
        _ip("netns", "add", namespace)
        self._created.append(namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")

    def _build(self, nodes: list[str]) -> None:
        self._add(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{self.addresses['hub']}/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for index, name in enumerate(nodes, start=2):
            namespace = self.nodes[name]
            self._add(namespace)
            peer = f"v{index}"
            _ip("link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name", peer, "netns", self.hub)
            _ip("-n", self.hub, "link", "set", peer, "master", "br0")
            _ip("-n", self.hub, "link", "set", peer, "up")
            self.addresses[name] = f"{self.subnet}.{index}"
            _ip("-n", namespace, "addr", "add", f"{self.addresses[name]}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")

    def namespace(self, node: str) -> str:
        return self.hub if node == "hub" else self.nodes[node]

    @contextlib.contextmanager
    def inside(self, node: str) -> Iterator[None]:
        """Run the block (and the processes it starts) in ``node``'s namespace, this thread only."""
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.namespace(node)}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(original)
        finally:
            os.close(target)
            os.close(original)

    def remove(self) -> None:
        """Delete every namespace made here (their interfaces and addresses go with them)."""
        for namespace in reversed(self._created):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self._created = []
