"""Loader memory on a 1,000,000-invocation trace set (goal: RSS ≤ 200 MB).

    python bench/loader_memory.py [--traces 1000] [--lines 1000]

Writes ``--traces`` trace files of ``--lines`` lines each (FaaSLoad format, 10 parameters a line
at most, seeded) under a temporary directory in /tmp, then, in a fresh child process (so the
generator's memory does not count), runs what the loader does with them before and while
injecting:

1. validation: :func:`loader.injection.traces.list_traces` and :func:`loader.injection.traces.scan_trace` on every file
   (the real run refuses to start on a problem, so it reads everything once);
2. scheduling: one :class:`loader.injection.traces.FileTraceSource` per file merged by the real
   :class:`loader.scheduler.Scheduler`, **fast-forwarded on a FakeClock** (``sleep_until`` jumps to
   the next deadline) with a **no-op dispatch** that only counts: no HTTP, no completions, no
   store. What is measured is the reader and the scheduler, not the invoker pool or the
   in-flight bookkeeping of completions (bounded by the activations in flight, not by the trace).

Prints the child's RSS after imports, after validation, after building the sources, and its
peak (VmHWM), plus the time each phase took and the invocations handed out per second of CPU.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

GOAL_MB = 200


def generate(tracedir: Path, traces: int, lines: int, seed: int) -> int:
    """``traces`` files of ``lines`` invocations: 100 users × (traces/100) actions, exponential waits."""
    rng = random.Random(seed)
    users = max(1, min(100, traces))
    written = 0
    for index in range(traces):
        user, action = f"user{index % users:03d}", f"action{index // users:04d}"
        rows = []
        for line in range(lines):
            wait_us = int(rng.expovariate(1.0) * 1_000_000)
            extra = "".join(f"\tp{k}:{rng.randrange(1000)}" for k in range(rng.randrange(4)))
            rows.append(f"{wait_us // 1_000_000}.{wait_us % 1_000_000:06d}\tinputs/{line % 50}.jpg{extra}\n")
        (tracedir / f"{user}-{action}-256-1000-1").write_text("".join(rows))
        written += lines
    return written


def child(tracedir: Path) -> dict:
    """Runs in the measured process: validate, then schedule everything on a FakeClock."""
    _common.use_repo_imports()
    from faasload.clock import FakeClock
    from loader.injection.traces import FileTraceSource, list_traces, scan_trace
    from loader.scheduler import Scheduler

    figures = {"rss_after_imports_kib": _common.memory_kib()["VmRSS"]}
    cpu0 = _common.cpu_times()
    paths, problems = list_traces(tracedir)
    planned = sum(scan_trace(path).invocations for path in paths)
    cpu1 = _common.cpu_times()
    figures.update(traces=len(paths), name_problems=len(problems), planned=planned,
                   validate_cpu_s=round(cpu1.total_s - cpu0.total_s, 2),
                   rss_after_validation_kib=_common.memory_kib()["VmRSS"])
    clock = FakeClock()
    counted = [0]

    def dispatch(item) -> None:  # the no-op invoker: count only
        counted[0] += 1

    sources = [FileTraceSource(path, incont="in", outcont="out") for path in paths]
    scheduler = Scheduler(sources, dispatch, clock=clock, start_s=clock.monotonic_s())
    figures["rss_after_sources_kib"] = _common.memory_kib()["VmRSS"]
    cpu2 = _common.cpu_times()
    peak_mid = 0
    while True:
        due_s = scheduler.tick()
        if due_s is None:
            break
        clock.sleep_until(due_s)
        if counted[0] % 100_000 < 5:
            peak_mid = max(peak_mid, _common.memory_kib()["VmRSS"])
    cpu3 = _common.cpu_times()
    memory = _common.memory_kib()
    schedule_cpu_s = cpu3.total_s - cpu2.total_s
    figures.update(dispatched=counted[0], trace_errors=len(scheduler.stats.trace_errors),
                   schedule_cpu_s=round(schedule_cpu_s, 2), schedule_wall_s=round(cpu3.wall_s - cpu2.wall_s, 2),
                   dispatch_per_cpu_s=round(counted[0] / schedule_cpu_s) if schedule_cpu_s else None,
                   rss_during_schedule_max_kib=peak_mid, rss_end_kib=memory["VmRSS"], peak_rss_kib=memory["VmHWM"])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=1000, help="invocations per trace")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    tracedir = Path(tempfile.mkdtemp(prefix="faasload-bench-traces-", dir="/tmp"))
    try:
        start = time.monotonic()
        total = generate(tracedir, args.traces, args.lines, args.seed)
        size_mb = sum(p.stat().st_size for p in tracedir.iterdir()) / 1e6
        print(f"generated {args.traces} traces, {total} invocations, {size_mb:.0f} MB in "
              f"{time.monotonic() - start:.1f} s", file=sys.stderr)
        out = subprocess.run([sys.executable, __file__, "--child", str(tracedir)], capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        figures = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tracedir, ignore_errors=True)
    figures.update(trace_set_mb=round(size_mb, 1), method="real trace reader + scheduler, FakeClock fast-forward, "
                   "no-op dispatch (counts only)")
    peak_mb = figures["peak_rss_kib"] / 1024
    figures["peak_rss_mb"] = round(peak_mb, 1)
    figures["goal_met"] = peak_mb <= GOAL_MB and figures["dispatched"] == figures["planned"]
    print(f"trace set: {figures['traces']} traces, {figures['planned']} invocations ({size_mb:.0f} MB)")
    print(f"RSS after imports {figures['rss_after_imports_kib'] / 1024:.1f} MB, after validation "
          f"{figures['rss_after_validation_kib'] / 1024:.1f} MB ({figures['validate_cpu_s']} s CPU), after sources "
          f"{figures['rss_after_sources_kib'] / 1024:.1f} MB")
    print(f"scheduled {figures['dispatched']} / {figures['planned']} in {figures['schedule_cpu_s']} s CPU "
          f"({figures['dispatch_per_cpu_s']} invocations per CPU second)")
    print(f"peak RSS {peak_mb:.1f} MB (goal ≤ {GOAL_MB} MB): {'met' if figures['goal_met'] else 'MISSED'}")
    print(f"results: {_common.write_results('loader_memory', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
