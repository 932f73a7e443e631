"""Peak memory and time of ``python -m loader.workloads azure2019`` on a full published day.

    python bench/workloads_memory.py [--functions 46000] [--minutes 1440] [--map calibrated]

Writes a synthetic published Azure 2019 day of ``--functions`` x ``--minutes`` (the size of
a real day: ~46,000 functions x 1,440 minutes, a ~140 MB invocations file; shaped like it:
mostly rare functions, a fifth timers, a few busy ones; generator in
``tests/workloads_support.py``), converts it in a child process and prints the child's
peak RSS (``ru_maxrss``), the wall time, and the counts.  The goal is < 500 MB
(docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _common

_common.use_repo_imports()

from tests.workloads_support import run_measured, write_azure2019_day


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=46_000)
    parser.add_argument("--minutes", type=int, default=1440)
    parser.add_argument("--map", default="calibrated")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="workloads-memory-", dir="/tmp"))
    try:
        day = scratch / "day"
        started = time.monotonic()
        written = write_azure2019_day(day, args.functions, args.minutes, seed=args.seed)
        generated_s = time.monotonic() - started
        files_mb = {p.name: round(p.stat().st_size / 1e6, 1) for p in sorted(day.iterdir())}
        started = time.monotonic()
        code, peak_mib, stderr = run_measured("azure2019", "--trace", day, "--out", scratch / "out", "--map", args.map,
                                              cwd=_common.ROOT)
        wall_s = time.monotonic() - started
        if code != 0:
            print(stderr[-3000:], file=sys.stderr)
            return 1
        document = json.loads((scratch / "out" / "workload.json").read_text())
        figures = {"input": {**written, "files_mb": files_mb, "generated_s": round(generated_s, 1)},
                   "map": args.map, "peak_rss_mib": round(peak_mib, 1), "wall_s": round(wall_s, 1),
                   "traces": document["counts"]["traces"], "invocations": document["counts"]["invocations"],
                   "users": document["counts"]["users"], "machine": _common.machine()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.functions} functions x {args.minutes} minutes ({files_mb}), {figures['invocations']} invocations "
          f"into {figures['traces']} traces for {figures['users']} users: peak RSS {figures['peak_rss_mib']} MiB, "
          f"{figures['wall_s']} s")
    print(f"results: {_common.write_results('workloads_memory', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
