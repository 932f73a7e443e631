"""Type checks and lint are part of the test command: mypy and ruff, configured in pyproject.toml.

Both run as subprocesses of this interpreter from the repository root, with their caches in a
temporary directory (nothing is written into the tree).  They are dev dependencies in the Pipfile
(``scripts/setup.sh`` installs them); without them these tests are skipped, saying so.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(module: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (a dev dependency in the Pipfile: scripts/setup.sh installs it)")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)


def test_mypy_reports_no_error(tmp_path):
    result = _run("mypy", ["--cache-dir", str(tmp_path / "mypy_cache")])
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mypy (configured in pyproject.toml) reports errors:\n{output}"
    assert "Success: no issues found" in output, output


def test_ruff_reports_no_error(tmp_path):
    result = _run("ruff", ["check", "--no-cache", "--output-format", "concise", "."])
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"ruff (configured in pyproject.toml) reports errors:\n{output}"
    assert "All checks passed" in output, output
