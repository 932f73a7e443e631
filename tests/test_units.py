"""scripts/install-units.sh and the systemd user units it writes: systemd accepts them, their
command lines are valid calls of the environment's daemons, the example configuration is copied
once with mode 0600. (Starting them under a user manager is the systemd guest's test.)"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ("faasload-loader", "faasload-monitor")


def _install(home: Path, *args: str) -> subprocess.CompletedProcess:
    venv = Path(sys.prefix)
    if not (venv / "pyvenv.cfg").exists():
        pytest.skip("not running in a virtual environment (scripts/setup.sh makes .venv)")
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "FAASLOAD_VENV": str(venv)}
    return subprocess.run([str(ROOT / "scripts" / "install-units.sh"), "--no-reload", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def _settings(unit: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in unit.read_text().splitlines() if "=" in line and not line.startswith("#"))


@pytest.fixture
def installed(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = _install(home)
    assert result.returncode == 0, result.stderr
    return home


def test_units_pass_systemd_analyze_verify(installed, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    units = [str(installed / ".config" / "systemd" / "user" / f"{name}.service") for name in UNITS]
    result = subprocess.run(["systemd-analyze", "--user", "verify", *units], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "HOME": str(installed), "XDG_RUNTIME_DIR": str(runtime)},
                            cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_units_run_the_environments_python_with_absolute_configuration(installed, tmp_path):
    config_dir = installed / ".config" / "faasload"
    for name in UNITS:
        settings = _settings(installed / ".config" / "systemd" / "user" / f"{name}.service")
        argv = shlex.split(settings["ExecStart"].replace("%t", str(tmp_path)).replace("%h", str(installed)))
        daemon = name.removeprefix("faasload-")
        assert argv[:3] == [str(Path(sys.prefix) / "bin" / "python"), "-m", daemon]
        assert argv[3:5] == ["--config", str(config_dir / f"{daemon}.yml")]
        assert settings["WorkingDirectory"] == "%h"
        assert str(ROOT / "docs") in settings["Documentation"]
        # The command line as systemd runs it, from another directory, only validating.
        result = subprocess.run([*argv, "--validate"], cwd="/", capture_output=True, text=True, timeout=60,
                                env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)})
        if daemon == "loader":  # the example's trace directory does not exist here: reported, named
            assert result.returncode == 2 and "injection:tracedir: directory does not exist" in result.stdout, \
                result.stdout + result.stderr
        else:
            assert result.returncode == 0, result.stderr
    monitor = _settings(installed / ".config" / "systemd" / "user" / "faasload-monitor.service")
    assert "--set sockets:measurement=%t/wdm/meas" in monitor["ExecStart"] and monitor["RuntimeDirectory"] == "wdm"
    assert monitor["Type"] == "notify"  # READY=1 once the sockets answer: the loader unit starts after that


def test_example_configuration_is_copied_once_and_private(installed):
    config_dir = installed / ".config" / "faasload"
    assert config_dir.stat().st_mode & 0o777 == 0o700
    for name in ("loader.yml", "monitor.yml"):
        assert (config_dir / name).stat().st_mode & 0o777 == 0o600
    loader = (config_dir / "loader.yml").read_text()
    assert "  measurement_socket: $XDG_RUNTIME_DIR/wdm/meas  # path" in loader
    (config_dir / "loader.yml").write_text("# mine\n")
    again = _install(installed)
    assert again.returncode == 0, again.stderr
    assert (config_dir / "loader.yml").read_text() == "# mine\n"
    assert f"kept {config_dir / 'loader.yml'}" in again.stdout


def test_no_user_manager_is_reported_not_fatal(tmp_path):
    if shutil.which("systemctl") is None:
        pytest.skip("systemctl not installed")
    home = tmp_path / "home"
    home.mkdir()
    venv = Path(sys.prefix)
    if not (venv / "pyvenv.cfg").exists():
        pytest.skip("not running in a virtual environment")
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "FAASLOAD_VENV": str(venv),
           "XDG_RUNTIME_DIR": str(tmp_path / "no-runtime-dir"), "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"}
    result = subprocess.run([str(ROOT / "scripts" / "install-units.sh")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "no systemd user manager answers" in result.stderr and "loginctl enable-linger" in result.stderr


def test_missing_environment_is_a_clear_error(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    result = subprocess.run([str(ROOT / "scripts" / "install-units.sh"), "--venv", str(tmp_path / "none")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"no environment at {tmp_path / 'none'}: run scripts/setup.sh first" in result.stderr
