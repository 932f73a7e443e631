"""faasload.cgroup_delegation on fake cgroup v2 trees: the controllers it enables and the errors
it gives (file and rule named).  The real kernel's answers are tested in the guest
(tests/test_localwhisk_cgroup_v2.py, tests/test_cgroup_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faasload import cgroup_delegation as delegation


def fake_cgroup(path: Path, controllers: str, *, procs: str = "", root: bool = False) -> Path:
    path.mkdir(parents=True)
    (path / "cgroup.controllers").write_text(controllers + "\n")
    (path / "cgroup.subtree_control").write_text("\n")
    (path / "cgroup.procs").write_text(procs)
    if not root:
        (path / "cgroup.type").write_text("domain\n")
    return path


def test_enables_the_wanted_controllers_the_parent_grants(tmp_path):
    cgroup = fake_cgroup(tmp_path / "a", "cpuset cpu io memory pids")
    assert delegation.enable_controllers(cgroup) == ("memory", "cpu", "pids")
    assert (cgroup / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"


def test_without_cpu_or_pids_memory_alone_is_enough(tmp_path):
    cgroup = fake_cgroup(tmp_path / "a", "memory")
    assert delegation.enable_controllers(cgroup) == ("memory",)
    assert (cgroup / "cgroup.subtree_control").read_text() == "+memory"


def test_already_enabled_is_not_written_again(tmp_path):
    cgroup = fake_cgroup(tmp_path / "a", "cpu memory pids")
    (cgroup / "cgroup.subtree_control").write_text("cpu memory pids\n")
    assert delegation.enable_controllers(cgroup) == ("memory", "cpu", "pids")
    assert (cgroup / "cgroup.subtree_control").read_text() == "cpu memory pids\n"


def test_missing_memory_names_both_files_and_the_top_down_rule(tmp_path):
    cgroup = fake_cgroup(tmp_path / "parent" / "a", "cpu pids")
    with pytest.raises(delegation.DelegationError) as error:
        delegation.enable_controllers(cgroup)
    message = str(error.value)
    assert message.startswith(f"{cgroup / 'cgroup.controllers'} lacks memory: "
                              f"{tmp_path / 'parent' / 'cgroup.subtree_control'} does not enable it")
    assert "cgroup v2 enables controllers top-down" in message and "Delegate=yes" in message


def test_root_members_and_evacuation_that_never_empties(tmp_path):
    root = fake_cgroup(tmp_path / "root", "memory", root=True)
    child = fake_cgroup(root / "child", "memory", procs="12\n34\n")
    assert delegation.is_root_cgroup(root) and not delegation.is_root_cgroup(child)
    assert delegation.member_pids(child) == [12, 34]
    # a fake cgroup.procs keeps its content: the processes never leave, which must not loop forever
    with pytest.raises(delegation.DelegationError, match=r"cgroup.procs still holds processes after 20 rounds"):
        delegation.evacuate(child, "leaf")
    assert (child / "leaf" / "cgroup.procs").read_text() == "34"  # the last pid written


def test_no_busctl_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(delegation.shutil, "which", lambda name: None)
    with pytest.raises(delegation.DelegationError, match="busctl .systemd. is not installed"):
        delegation.request_scope("localwhisk-1.scope")
