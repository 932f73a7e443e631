"""What docs/scale-out.md promises about the split and the shard unit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from loader.cluster import shard

ROOT = Path(__file__).resolve().parents[1]


def test_the_documented_hash_is_the_code_s():
    formula = 'int.from_bytes(SHA-256(u as UTF-8)[:8], "big") % N == I - 1'
    assert formula in (ROOT / "docs" / "scale-out.md").read_text()
    assert formula in shard.__doc__


def test_shard_unit_passes_verify():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = ROOT / "systemd" / "faasload-loader-shard.service"
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "faasload-loader-shard" not in result.stderr
    assert "--shard ${FAASLOAD_SHARD}" in unit.read_text()
