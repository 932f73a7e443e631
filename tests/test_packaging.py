"""The faasload distribution: pyproject.toml agrees with the Pipfile, Pipfile.lock becomes hashed
requirements (scripts/lock_requirements.py), a built wheel carries the example files, and an
installed FaaSLoad runs from any directory."""

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK_TOOL = ROOT / "scripts" / "lock_requirements.py"


def _requirement(text: str) -> tuple[str, str]:
    name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", text).groups()
    return name.lower(), spec.replace(" ", "")


def _pipfile_section(section: str) -> dict[str, str]:
    pipfile = tomllib.loads((ROOT / "Pipfile").read_text())
    return {name.lower(): ("" if spec == "*" else spec.replace(" ", "")) for name, spec in pipfile[section].items()}


def test_pyproject_dependencies_are_the_pipfiles():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert dict(map(_requirement, project["dependencies"])) == _pipfile_section("packages")
    assert dict(map(_requirement, project["optional-dependencies"]["dev"])) == _pipfile_section("dev-packages")
    assert project["requires-python"] == ">=3.11"
    assert set(project["scripts"]) == {"faasload-loader", "faasload-monitor", "localwhisk"}


def _lock_lines(tmp_path, lock: dict, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "Pipfile.lock"
    path.write_text(json.dumps(lock))
    return subprocess.run([sys.executable, str(LOCK_TOOL), "--lock", str(path), *args], capture_output=True,
                          text=True, timeout=60)


def test_the_lock_becomes_one_hashed_line_per_package():
    lock = json.loads((ROOT / "Pipfile.lock").read_text())
    result = subprocess.run([sys.executable, str(LOCK_TOOL)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    names = {name.lower() for section in ("default", "develop") for name in lock[section]}
    assert sorted(line.split("==")[0] for line in lines) == sorted(names)
    for line in lines:
        name = line.split("==")[0]
        entry = lock["default"].get(name) or lock["develop"][name]
        assert line.startswith(f"{name}{entry['version']} ; {entry['markers']} --hash=sha256:")
        assert line.count("--hash=") == len(entry["hashes"])
    production = subprocess.run([sys.executable, str(LOCK_TOOL), "--no-dev"], capture_output=True, text=True,
                                timeout=60).stdout
    assert "pytest==" not in production and "numpy==" in production


@pytest.mark.parametrize("entry, message", [
    ({"version": ">=1", "hashes": ["sha256:aa"]}, "pkg: expected a pinned version '==X', got '>=1'"),
    ({"version": "==1"}, "pkg: expected a non-empty list of 'sha256:...' hashes, got None"),
    ({"git": "https://example.org/pkg.git", "ref": "abc"}, "pkg: a 'git' entry cannot be installed with --require-hashes"),
])
def test_a_lock_entry_without_pin_or_hashes_is_named(tmp_path, entry, message):
    result = _lock_lines(tmp_path, {"default": {"pkg": entry}, "develop": {}})
    assert result.returncode == 2
    assert result.stderr.strip() == f"lock_requirements: {tmp_path / 'Pipfile.lock'}: {message}"


def test_a_package_locked_twice_at_different_versions_is_refused(tmp_path):
    entry = {"version": "==1", "hashes": ["sha256:aa"]}
    result = _lock_lines(tmp_path, {"default": {"pkg": entry}, "develop": {"pkg": {**entry, "version": "==2"}}})
    assert result.returncode == 2 and "pkg: default locks ==1, develop locks ==2" in result.stderr


def test_a_built_wheel_carries_the_example_files(tmp_path):
    """As `pip install .` builds it (build isolation: setuptools from the package index)."""
    source = tmp_path / "src"
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "--wheel-dir", str(tmp_path / "dist"), str(source)], capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("faasload-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("faasload/examples/config/loader.yml", "faasload/examples/config/monitor.yml",
                     "faasload/examples/config/localwhisk.yml", "faasload/resources.py", "actions/manifest.yml",
                     "actions/calibrated/burn.py", "actions/calibrated/manifest.yml", "demo/loader.yml",
                     "demo/traces/alice-audio_gain-256-45", "loader/__main__.py", "localwhisk/runtime/proxy.py"):
        assert expected in names
    assert not any(name.startswith(("tests/", "bench/", "scripts/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "faasload-loader = loader.__main__:main" in scripts and "localwhisk = localwhisk.__main__:main" in scripts


@pytest.mark.parametrize("module", ["loader", "monitor", "localwhisk", "loader.psql", "faasload.resources"])
@pytest.mark.parametrize("cwd", ["elsewhere", "home"])
def test_installed_faasload_runs_from_any_directory(tmp_path, module, cwd):
    try:
        metadata.distribution("faasload")
    except metadata.PackageNotFoundError:
        pytest.skip("faasload is not installed in this interpreter (scripts/setup.sh installs it in .venv)")
    if cwd == "home":  # a home directory with the checkout cloned as ~/faasload, as the systemd units run
        (tmp_path / "faasload" / "config").mkdir(parents=True)
        (tmp_path / "faasload" / "loader").mkdir()
    result = subprocess.run([sys.executable, "-m", module, "--help" if module != "faasload.resources" else "config/loader.yml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    if module == "faasload.resources":
        assert Path(result.stdout.strip()).is_file()
    else:
        assert result.stdout.startswith("usage: python -m")
