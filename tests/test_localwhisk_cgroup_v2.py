"""localwhisk's process backend on a pure cgroup v2 host: a delegated subtree, done right.

localwhisk moves itself into the leaf ``<its cgroup>/server``, enables memory, cpu and pids in
its cgroup and in ``localwhisk-<pid>``, and runs each container in ``localwhisk-<pid>/<id>``:
in the scope it asks systemd for (its cgroup is not delegated), in a scope or unit that already
has ``Delegate=yes``, in a cgroup it is alone in (no systemd), or in the root cgroup where it
stays; and it refuses, naming the file and the rule, to share a cgroup with other processes.  Run in the guest (tests/vm/), as
root, and as an unprivileged user under the user's systemd manager (``tests/vm/run.sh --user``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from faasload import cgroup_delegation as delegation
from tests import cgroup_helpers

ROOT = Path(__file__).resolve().parent.parent
CGROUP_ROOT = Path("/sys/fs/cgroup")
MIB = 1024 * 1024
ACTION_MEMORY_MB = 128
WHERE_AM_I = "def main(args):\n    return {'cgroup': open('/proc/self/cgroup').read().strip().split('::')[-1]}\n"

pytestmark = [pytest.mark.vm, pytest.mark.cgroups]


@pytest.fixture(autouse=True)
def pure_v2():
    if cgroup_helpers.version() != 2:
        pytest.skip("needs a pure cgroup v2 host (tests/vm/run.sh boots one)")


@pytest.fixture
def as_root():
    reason = cgroup_helpers.unavailable_reason()
    if reason:
        pytest.skip(reason)


def needs_systemd():
    if not delegation.systemd_running():
        pytest.skip("needs systemd as init")


def cgroup_of(pid: int) -> Path:
    return delegation.own_cgroup(CGROUP_ROOT, pid=pid)


def run_in_a_container(lw) -> Path:
    """Deploy and run an action that reports its cgroup; the cgroup's directory."""
    auth = lw.create_user(f"cg-{uuid.uuid4().hex[:6]}")
    lw.deploy(auth, "whereami", WHERE_AM_I, memory_mb=ACTION_MEMORY_MB)
    response = requests.post(lw.url("actions/whereami?blocking=true&result=true"), auth=tuple(auth.split(":", 1)),
                             timeout=120)
    assert response.status_code == 200, response.text
    return CGROUP_ROOT / response.json()["cgroup"].lstrip("/")


def assert_delegated_subtree(lw, parent: Path) -> None:
    """localwhisk sits in ``parent/server``; its container in ``parent/localwhisk-<pid>/...`` with
    the action's memory limit and its memory accounted."""
    assert cgroup_of(lw.pid) == parent / "server"
    assert {"memory", "cpu", "pids"} <= set((parent / "cgroup.subtree_control").read_text().split())
    container = run_in_a_container(lw)
    assert container.parent == parent / f"localwhisk-{lw.pid}"
    assert {"memory", "cpu", "pids"} <= set(container.parent.joinpath("cgroup.subtree_control").read_text().split())
    assert int((container / "memory.max").read_text()) == ACTION_MEMORY_MB * MIB
    assert int((container / "memory.current").read_text()) > MIB
    assert "usage_usec" in (container / "cpu.stat").read_text()


def test_not_delegated_it_asks_systemd_for_a_delegated_scope(as_root, localwhisk_factory):
    needs_systemd()
    lw = localwhisk_factory.start(backend="process")  # a child of the test process: not delegated
    scope = CGROUP_ROOT / "system.slice" / f"localwhisk-{lw.pid}.scope"
    assert delegation.is_delegated(scope)
    assert_delegated_subtree(lw, scope)
    assert f"into the scope {scope} (Delegate=yes)" in lw.log_text()


def test_in_a_scope_with_delegate_yes_it_stays(as_root, localwhisk_factory):
    needs_systemd()
    unit = f"faasload-test-lw-{uuid.uuid4().hex[:8]}"
    lw = localwhisk_factory.start(backend="process", command_prefix=[
        "systemd-run", "--scope", "--quiet", f"--unit={unit}", "--property=Delegate=yes"])
    assert_delegated_subtree(lw, CGROUP_ROOT / "system.slice" / f"{unit}.scope")
    assert "into the scope" not in lw.log_text()


def test_alone_in_a_cgroup_it_needs_no_systemd(as_root, localwhisk_factory, cgroups):
    own = cgroups.create()[""]
    lw = localwhisk_factory.start(backend="process", settings={"containers:systemd_scope": False},
                                  command_prefix=cgroup_helpers.join_command(own))
    assert_delegated_subtree(lw, own)


def test_in_the_root_cgroup_it_stays_there(as_root, localwhisk_factory):
    """No systemd and no cgroup namespace (tests/vm/run.sh --bare): the root may hold processes."""
    if not delegation.is_root_cgroup(cgroup_of(os.getpid())) or delegation.systemd_running():
        pytest.skip("needs the test process in the root cgroup, without systemd (tests/vm/run.sh --bare)")
    lw = localwhisk_factory.start(backend="process", command_prefix=[])
    assert cgroup_of(lw.pid) == CGROUP_ROOT
    container = run_in_a_container(lw)
    assert container.parent == CGROUP_ROOT / f"localwhisk-{lw.pid}"
    assert int((container / "memory.max").read_text()) == ACTION_MEMORY_MB * MIB


def test_sharing_its_cgroup_is_an_error_naming_the_file_and_the_rule(as_root, tmp_path):
    leaf = cgroup_of(os.getpid())  # the test process's own leaf: localwhisk would share it
    if delegation.is_root_cgroup(leaf):
        pytest.skip("the root cgroup may hold processes: nothing to refuse there")
    done = subprocess.run(
        [sys.executable, "-m", "localwhisk", "--set", "containers:backend=process", "--set",
         "containers:systemd_scope=false", "--set", "server:port=0", "--set", f"state:dir={tmp_path / 'state'}",
         "--set", f"storage:dir={tmp_path / 'storage'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(f"localwhisk: error: {leaf / 'cgroup.procs'} holds other processes than localwhisk (")
    assert '(the "no internal processes" rule)' in message
    assert "containers:cgroups: false" in message


def test_unprivileged_it_asks_the_user_manager_for_a_delegated_scope(localwhisk_factory):
    if os.geteuid() == 0:
        pytest.skip("runs as an unprivileged user: tests/vm/run.sh --user")
    needs_systemd()
    lw = localwhisk_factory.start(backend="process")
    scope = cgroup_of(lw.pid).parent
    assert scope.name == f"localwhisk-{lw.pid}.scope"
    assert scope.is_relative_to(CGROUP_ROOT / "user.slice" / f"user-{os.geteuid()}.slice")
    assert_delegated_subtree(lw, scope)  # systemd 252 marks it trusted.delegate, which only root can read
