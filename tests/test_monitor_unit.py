"""systemd/faasload-monitor.service: systemd accepts it, and its command line is a valid monitor call."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "faasload-monitor.service"


def unit_settings():
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def test_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    copy = tmp_path / UNIT.name
    shutil.copy(UNIT, copy)
    result = subprocess.run(["systemd-analyze", "--user", "verify", str(copy)], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_unit_command_line_is_a_valid_monitor_invocation(tmp_path):
    settings = unit_settings()
    assert settings["RuntimeDirectory"] == "wdm"
    argv = shlex.split(settings["ExecStart"].replace("%t", str(tmp_path)))
    assert argv[:4] == ["/usr/bin/env", "python3", "-m", "monitor"]
    result = subprocess.run([sys.executable, "-m", "monitor", *argv[4:], "--validate"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"sockets:notification={tmp_path}/wdm/notif" in argv
    assert f"sockets:measurement={tmp_path}/wdm/meas" in argv
