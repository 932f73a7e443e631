"""cgroup v2: make a cgroup able to hold child cgroups with the memory, cpu and pids controllers.

The kernel's rules that decide it (``Documentation/admin-guide/cgroup-v2.rst``):

* **no internal processes**: a cgroup other than the root can enable controllers for its children
  (``cgroup.subtree_control``) only while it holds no process: processes live in leaves.  So a
  process that wants to create confined children of its own cgroup first moves itself (and
  whatever else is there) into a leaf child;
* **top-down**: a controller can be enabled in a cgroup's ``cgroup.subtree_control`` only if it
  is listed in its ``cgroup.controllers``, i.e. enabled in its parent's ``cgroup.subtree_control``;
* **delegation**: under systemd, a unit's cgroup belongs to systemd, which may rewrite its
  ``cgroup.subtree_control``, unless the unit has ``Delegate=yes``: systemd then marks the cgroup
  with the extended attribute ``trusted.delegate`` = ``1`` (only root can read ``trusted.*``;
  systemd 253 and later also set ``user.delegate``).  Under a user's manager every cgroup is the
  user's to write, delegated or not, so a user other than root cannot tell on systemd 252.  A
  process in a cgroup that is not delegated can ask systemd for a transient scope with
  ``Delegate=yes`` and move into it (:func:`request_scope`).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from pathlib import Path

from .cgroup_self import CGROUP_ROOT, own_cgroup_paths

#: What FaaSLoad enables for the children it creates; only memory is indispensable (cpu.stat's
#: usage_usec exists without the cpu controller).
CONTROLLERS = ("memory", "cpu", "pids")
REQUIRED_CONTROLLERS = ("memory",)
RULE_NO_INTERNAL_PROCESSES = ("cgroup v2 lets a cgroup other than the root enable controllers for its children "
                              "only while it holds no process (the \"no internal processes\" rule)")
RULE_TOP_DOWN = ("cgroup v2 enables controllers top-down: a controller must be enabled in the parent's "
                 "cgroup.subtree_control before a child can enable it for its own children")
#: Attempts at emptying a cgroup whose processes keep forking.
EVACUATION_ROUNDS = 20


class DelegationError(RuntimeError):
    """The cgroup cannot get children with controllers; the message names the file and the rule."""


def is_root_cgroup(directory: Path) -> bool:
    """The root of a hierarchy has no ``cgroup.type`` (a cgroup namespace's root does)."""
    return not (directory / "cgroup.type").exists()


def member_pids(directory: Path) -> list[int]:
    return [int(line) for line in (directory / "cgroup.procs").read_text().split()]


def is_delegated(directory: Path) -> bool:
    """Whether systemd delegated this cgroup (``Delegate=yes``): the xattr ``trusted.delegate``
    or ``user.delegate`` is ``1`` (False where this user cannot read them)."""
    for name in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(directory, name) == b"1":
                return True
        except OSError:
            continue
    return False


def systemd_running() -> bool:
    """Whether systemd is the init system (``sd_booted()``)."""
    return Path("/run/systemd/system").is_dir()


def own_cgroup(root: Path = CGROUP_ROOT, pid: int | None = None) -> Path:
    """The v2 cgroup directory of this process (or of ``pid``)."""
    proc_file = Path(f"/proc/{pid}/cgroup") if pid else Path("/proc/self/cgroup")
    return root / own_cgroup_paths(proc_file).get("", "/").lstrip("/")


def move_process(pid: int, directory: Path) -> None:
    procs = directory / "cgroup.procs"
    try:
        procs.write_text(str(pid))
    except ProcessLookupError:
        pass  # it exited meanwhile
    except OSError as exc:
        raise DelegationError(f"cannot move process {pid} into {directory}: writing {procs}: {exc.strerror}") from None


def evacuate(directory: Path, leaf: str) -> Path:
    """Move every process of ``directory`` into its child ``leaf`` (created); return the leaf."""
    target = directory / leaf
    target.mkdir(exist_ok=True)
    for _ in range(EVACUATION_ROUNDS):
        pids = member_pids(directory)
        if not pids:
            return target
        for pid in pids:
            move_process(pid, target)
    raise DelegationError(f"{directory / 'cgroup.procs'} still holds processes after {EVACUATION_ROUNDS} rounds "
                          "of moving them into " + str(target))


def enable_controllers(directory: Path, wanted: tuple[str, ...] = CONTROLLERS,
                       required: tuple[str, ...] = REQUIRED_CONTROLLERS) -> tuple[str, ...]:
    """Enable ``wanted`` controllers for the children of ``directory`` (those it has); return them.

    Raises :class:`DelegationError` naming the file and the rule when a ``required`` one cannot be.
    """
    available = (directory / "cgroup.controllers").read_text().split()
    missing = [c for c in required if c not in available]
    if missing:
        raise DelegationError(f"{directory / 'cgroup.controllers'} lacks {' '.join(missing)}: "
                              f"{directory.parent / 'cgroup.subtree_control'} does not enable it ({RULE_TOP_DOWN}; "
                              "under systemd, run in a unit or scope with Delegate=yes)")
    enabled = tuple(c for c in wanted if c in available)
    control = directory / "cgroup.subtree_control"
    already = control.read_text().split()
    todo = [c for c in enabled if c not in already]
    if not todo:
        return enabled
    try:
        control.write_text(" ".join(f"+{c}" for c in todo))
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            pids = member_pids(directory)
            raise DelegationError(f"cannot enable {' '.join(todo)} in {control}: {directory} holds processes "
                                  f"{pids[:5]}{'...' if len(pids) > 5 else ''}; {RULE_NO_INTERNAL_PROCESSES}") from None
        raise DelegationError(f"cannot enable {' '.join(todo)} in {control}: {exc.strerror} (the cgroup is not "
                              "delegated to this user: root, or a systemd unit or scope with Delegate=yes)") from None
    return enabled


def request_scope(name: str, *, pid: int | None = None, timeout_s: float = 10.0) -> Path:
    """Ask systemd (the system manager as root, else the user's manager) for a transient scope
    ``name`` with ``Delegate=yes`` holding ``pid`` (default: this process); return its cgroup."""
    pid = pid or os.getpid()
    busctl = shutil.which("busctl")
    if busctl is None:
        raise DelegationError("cannot ask systemd for a delegated scope: busctl (systemd) is not installed")
    bus = "--system" if os.geteuid() == 0 else "--user"
    command = [busctl, bus, "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
               "org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))", name, "fail",
               "3", "PIDs", "au", "1", str(pid), "Delegate", "b", "true",
               "Description", "s", "FaaSLoad: delegated cgroup subtree", "0"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise DelegationError(f"systemd did not answer the request for the scope {name} in {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise DelegationError(f"systemd refused the scope {name} ({' '.join(command[:3])}): "
                              f"{(done.stderr or done.stdout).strip()}")
    deadline_s = time.monotonic() + timeout_s
    while True:  # the job that moves the process runs asynchronously
        directory = own_cgroup(pid=pid)
        if directory.name == name:
            return directory
        if time.monotonic() > deadline_s:
            raise DelegationError(f"process {pid} is still in {directory} {timeout_s:.0f} s after systemd "
                                  f"accepted the scope {name}")
        time.sleep(0.01)
