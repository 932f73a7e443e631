"""Secrets are created 0600 from their first byte (issue 16, item 15): localwhisk's
``subjects.json`` (every user's key) and the loader's key files.

There must be no moment at which another user could open the file: each test runs with umask
000 (so only the creation mode protects the file), watches every ``os.open`` that creates a
file, and checks its mode right after creation, before a byte is written.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from loader.platform.keys import store_key
from localwhisk.users import UserStore

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:" + "k" * 64


@pytest.fixture
def created(monkeypatch):
    """Every file created through ``os.open`` under umask 000: (path, mode at creation)."""
    seen: list[tuple[str, int]] = []
    real_open = os.open

    def watching_open(path, flags, mode=0o777, *args, **kwargs):
        existed = os.path.exists(path)
        fd = real_open(path, flags, mode, *args, **kwargs)
        if flags & os.O_CREAT and not existed:
            seen.append((os.fspath(path), stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    monkeypatch.setattr(os, "open", watching_open)
    previous = os.umask(0)
    try:
        yield seen
    finally:
        os.umask(previous)


def _assert_private_from_creation(created, directory: Path, name: str) -> None:
    final = directory / name
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    ours = [(path, mode) for path, mode in created if Path(path).parent == directory]
    assert ours, f"{name} was not created through os.open with a mode (so it was open to others at first)"
    for path, mode in ours:
        assert mode & 0o077 == 0, f"{path} was created with mode {mode:04o}"


def test_write_private(created, tmp_path):
    from faasload.private_file import write_private
    target = tmp_path / "secret"
    write_private(target, b"s3cret\n")
    assert target.read_bytes() == b"s3cret\n"
    _assert_private_from_creation(created, tmp_path, "secret")
    target.chmod(0o644)  # replacing a file that had become readable leaves it private again
    write_private(target, b"again\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"again\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]  # no temporary file left


def test_localwhisk_subjects_file_private_from_its_first_byte(created, tmp_path):
    store = UserStore(tmp_path / "state")
    identity = store.create("alice-user")
    store.seed_guest()
    _assert_private_from_creation(created, tmp_path / "state", "subjects.json")
    assert identity.key in (tmp_path / "state" / "subjects.json").read_text()


def test_loader_key_file_private_from_its_first_byte(created, tmp_path):
    path = store_key(tmp_path / "keys", "alice", CREDENTIALS)
    assert path.read_text() == CREDENTIALS + "\n"
    _assert_private_from_creation(created, tmp_path / "keys", "alice")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700


def test_admin_command_under_a_permissive_umask(tmp_path):
    config = tmp_path / "localwhisk.yml"
    config.write_text(f"state:\n  dir: {tmp_path / 'state'}\n")
    result = subprocess.run([sys.executable, "-m", "localwhisk", "--config", str(config), "user", "create",
                             "bob-user"], cwd=ROOT, capture_output=True, text=True, timeout=60, umask=0)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "state" / "subjects.json").stat().st_mode) == 0o600
