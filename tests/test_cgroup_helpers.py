"""The test helpers' cgroups on cgroup v2 work wherever the suite is started: a login session,
a systemd service (the guest's job runs in one), or a leaf an earlier run made.
Run in the guest (tests/vm/)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from faasload import cgroup_delegation as delegation
from tests import cgroup_helpers

ROOT = Path(__file__).resolve().parent.parent

#: Creates a child cgroup as the suite does; prints where the process sits and what the child has.
PROBE = """
from pathlib import Path
from tests import cgroup_helpers
factory = cgroup_helpers.CgroupFactory()
child = factory.create()[""]
print(open("/proc/self/cgroup").read().strip().split("::")[-1])
print(child.parent)
print((child / "memory.current").exists(), (child / "cpu.stat").exists(), (child / "pids.current").exists())
factory.cleanup()
"""

pytestmark = [pytest.mark.vm, pytest.mark.cgroups]


@pytest.fixture(autouse=True)
def v2_with_systemd():
    reason = cgroup_helpers.unavailable_reason()
    if reason:
        pytest.skip(reason)
    if cgroup_helpers.version() != 2 or not delegation.systemd_running():
        pytest.skip("needs a pure cgroup v2 host run by systemd (tests/vm/run.sh boots one)")


def probe(*prefix: str) -> tuple[str, Path, str]:
    done = subprocess.run([*prefix, sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done
    cgroup, parent, files = done.stdout.strip().splitlines()[-3:]
    return cgroup, Path(parent), files


def test_from_a_login_session_the_session_moves_into_a_leaf():
    # runuser -l goes through PAM (pam_systemd): a new session scope, as an ssh login
    done = subprocess.run(["runuser", "-l", "root", "-c", f"cd {ROOT} && {sys.executable} -c '{PROBE}'"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done
    cgroup, parent, files = done.stdout.strip().splitlines()[-3:]
    assert Path(parent).name.startswith("session-") and Path(parent).name.endswith(".scope"), parent
    assert cgroup == f"/{Path(parent).relative_to('/sys/fs/cgroup')}/{cgroup_helpers.TEST_LEAF}"
    assert files == "True True True"


def test_from_a_systemd_service():
    unit = f"faasload-test-helpers-{uuid.uuid4().hex[:8]}"
    cgroup, parent, files = probe("systemd-run", "--wait", "--pipe", "--quiet", f"--unit={unit}",
                                  f"--working-directory={ROOT}")
    assert parent == Path("/sys/fs/cgroup/system.slice") / f"{unit}.service"
    assert cgroup == f"/system.slice/{unit}.service/{cgroup_helpers.TEST_LEAF}"
    assert files == "True True True"


def test_started_from_the_leaf_of_an_earlier_run_it_nests_no_deeper():
    parent = cgroup_helpers.v2_parent()  # this test process already sits in its leaf
    cgroup, probe_parent, files = probe()
    assert probe_parent == parent
    assert cgroup == f"/{parent.relative_to('/sys/fs/cgroup')}/{cgroup_helpers.TEST_LEAF}"
    assert files == "True True True"
