"""Cost of the invoker wrappers per call when the monitor is down (goal: < 20 ms).

    python bench/wrapper_cost.py [--calls 300]

Times `docker pause ID` and `runc resume ID` through the wrappers against a stand-in real
binary (`/bin/true`-like), with (a) no socket file and (b) a stale socket file nobody listens
on, and the same calls to the stand-in directly; prints the overhead percentiles in ms.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRAPPERS = ROOT / "scripts" / "invoker-wrappers"


def _times_ms(argv, env, calls):
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append((time.perf_counter() - start) * 1000)
    return out


def _pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    subprocess.run(["make", "-s", "-C", str(WRAPPERS)], check=True)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        real = Path(tmp) / "real"
        real.mkdir()
        for name in ("docker", "runc"):
            (real / name).write_text("#!/bin/sh\nexit 0\n")
            (real / name).chmod(0o755)
        sock = Path(tmp) / "notif"
        env = dict(os.environ, PATH=f"{WRAPPERS}:{real}:{os.environ['PATH']}", FAASLOAD_MONITOR_SOCKET=str(sock))
        direct = _times_ms([str(real / "docker"), "pause", "abc"], env, args.calls)
        print(f"direct stand-in call: p50 {statistics.median(direct):.2f} ms, p99 {_pct(direct, 99):.2f} ms")
        for label in ("no socket file", "stale socket (monitor crashed)"):
            if label.startswith("stale"):
                s = socket.socket(socket.AF_UNIX)
                s.bind(str(sock))
                s.close()
            for argv in (["docker", "pause", "abc"], ["runc", "resume", "abc"]):
                wrapped = _times_ms(argv, env, args.calls)
                overhead = [w - statistics.median(direct) for w in wrapped]
                print(f"{label:32s} {argv[0]:7s} {argv[1]:7s} overhead p50 {statistics.median(overhead):6.2f} ms "
                      f"p99 {_pct(overhead, 99):6.2f} ms max {max(overhead):6.2f} ms (goal < 20 ms)")


if __name__ == "__main__":
    main()
