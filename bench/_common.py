"""Shared helpers of the bench scripts: percentiles, machine facts, results files, process
CPU and memory from /proc, Debian packages, and a minimal nginx endpoint.

Not a test helper: the bench scripts print figures, nothing here asserts speed.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def use_repo_imports() -> None:
    """Make ``loader``, ``monitor`` and ``faasload`` importable when run as ``python bench/x.py``."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- statistics

def percentile(values, q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    values = list(values)
    if not values:
        return None
    return numpy.percentile(numpy.asarray(values), q, method="inverted_cdf").item()


def spread(values, *, scale: float = 1.0, digits: int = 3) -> dict:
    """p50/p90/p99/p99.9/max of ``values`` × ``scale`` (None entries when empty)."""
    ordered = sorted(values)
    out = {"count": len(ordered)}
    for label, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        value = percentile(ordered, q)
        out[label] = None if value is None else round(value * scale, digits)
    out["max"] = round(ordered[-1] * scale, digits) if ordered else None
    return out


# --------------------------------------------------------------------------- machine and results

def machine() -> dict:
    """What the figures were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_1m_at_start": os.getloadavg()[0]}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "loader", "monitor",
                                "faasload", "bench"], capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() or "unknown"
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_results(name: str, figures: dict) -> Path:
    """Write ``bench/results/<name>-<date>.json`` with the machine, the commit and the figures."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now()
    path = RESULTS_DIR / f"{name}-{now:%Y%m%d-%H%M%S}.json"
    document = {"bench": name, "date": now.isoformat(timespec="seconds"), "commit": git_commit(),
                "machine": machine(), "argv": sys.argv, "figures": figures}
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


# --------------------------------------------------------------------------- processes

@dataclass(frozen=True, slots=True)
class CpuTimes:
    user_s: float
    system_s: float
    wall_s: float

    @property
    def total_s(self) -> float:
        return self.user_s + self.system_s


def cpu_times(pid: int | None = None) -> CpuTimes:
    """User and system CPU of a process (all its threads) from /proc/PID/stat, and the monotonic time."""
    stat = Path(f"/proc/{pid or 'self'}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return CpuTimes(int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK, time.monotonic())


def total(readings: list[CpuTimes]) -> CpuTimes:
    """The CPU of several processes read at the same moment, as one reading."""
    return CpuTimes(sum(r.user_s for r in readings), sum(r.system_s for r in readings), readings[0].wall_s)


def cpu_share(before: CpuTimes, after: CpuTimes) -> dict:
    """CPU used between two readings: seconds and percent of one core."""
    wall_s = after.wall_s - before.wall_s
    used_user = after.user_s - before.user_s
    used_sys = after.system_s - before.system_s
    return {"user_s": round(used_user, 3), "sys_s": round(used_sys, 3), "wall_s": round(wall_s, 3),
            "pct_of_one_core": round(100 * (used_user + used_sys) / wall_s, 1) if wall_s > 0 else None}


def memory_kib(pid: int | None = None) -> dict:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def ensure_packages(binaries: dict[str, str]) -> None:
    """``apt-get install -y`` the Debian packages of missing binaries (``binary -> package``)."""
    missing = sorted({package for binary, package in binaries.items() if shutil.which(binary) is None
                      and not Path(f"/usr/sbin/{binary}").exists()})
    if not missing:
        return
    print(f"installing {' '.join(missing)} (apt-get)", file=sys.stderr)
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(command, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
