"""Loader memory on a 1,000,000-invocation trace set (goal: RSS of all loader processes ≤ 200 MB).

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

3. injecting with sender processes: the same set replayed again by the real scheduler on a
   clock running ``--speed`` times faster than real time (the set plans 1,000 invocations/s, so
   5,000/s by default), the real :class:`loader.sending.processes.ProcessInvokerPool`
   (``--processes`` sender processes, the loader's default 2, each an event loop with its
   connections) against nginx answering like OpenWhisk, and the real Recorder to a null sink,
   for ``--replay-s`` seconds (then stopped as a stop request does). The RSS of the child and of
   every sender process is read every 0.25 s: the goal is on their sum.

Not in the figures: the store writer's thread and the completion tracker of a real run (their
memory follows the activations in flight, not the trace set).

Prints the child's RSS after imports, after validation, after building the sources, and its
peak (VmHWM), the sender processes' peaks, the peak of the sum of all loader processes, plus
the time each phase took and the invocations handed out per second of CPU.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
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


class SpedUpClock:
    """The real clock run ``speed`` times faster, from the moment it is made (for the scheduler only)."""

    def __init__(self, speed: float):
        from faasload.clock import RealClock
        self.real = RealClock(spin_s=0.0)
        self.speed = speed
        self.origin_s = time.monotonic()

    def monotonic_s(self) -> float:
        return self.origin_s + (time.monotonic() - self.origin_s) * self.speed

    def epoch_s(self) -> float:
        return time.time()

    def sleep_until(self, deadline_s: float, wake=None) -> None:
        self.real.sleep_until(self.origin_s + (deadline_s - self.origin_s) / self.speed, wake)


def replay_with_senders(paths: list[Path], apihost: str, processes: int, speed: float, replay_s: float) -> dict:
    """Phase 3: the set replayed through the real pool and sender processes; RSS of every loader process."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from injection_precision import FAKE_KEY, NullSink, NullTracker

    from faasload.clock import RealClock
    from loader.injection.traces import FileTraceSource, read_ahead_bytes
    from loader.platform.client import ClientSettings
    from loader.platform.keys import parse_key
    from loader.scheduler import Scheduler
    from loader.sending.processes import ProcessInvokerPool
    from loader.storage.recorder import Recorder
    from loader.storage.summary import RunStats
    keys = {path.name.split("-")[0]: parse_key(FAKE_KEY, path.name.split("-")[0], "bench") for path in paths}
    stats = RunStats(5_000)
    recorder = Recorder(NullSink(), 1, stats)
    stopping = threading.Event()
    start = [time.monotonic()]
    pool = ProcessInvokerPool(processes, ClientSettings(apihost, timeout_s=10.0), keys, recorder, NullTracker(),
                              clock=RealClock(spin_s=0.0), start_s=lambda: start[0], stopping=stopping,
                              lead_s=0.0)   # the replay is sped up: its planned times are not the senders' clock
    pool.start()
    clock = SpedUpClock(speed)
    read_ahead = read_ahead_bytes(len(paths))
    sources = [FileTraceSource(path, incont="in", outcont="out", read_ahead_bytes=read_ahead) for path in paths]
    scheduler = Scheduler(sources, pool.submit, clock=clock, start_s=clock.monotonic_s(), flush=pool.flush)
    start[0] = time.monotonic()
    thread = threading.Thread(target=scheduler.run, args=(stopping,), daemon=True)
    thread.start()
    pids = [None, *pool.process_ids]
    peak_sum_kib = 0
    while time.monotonic() < start[0] + replay_s and thread.is_alive():
        peak_sum_kib = max(peak_sum_kib, sum(_common.memory_kib(pid)["VmRSS"] for pid in pids))
        time.sleep(0.25)
    sender_peaks_kib = [_common.memory_kib(pid)["VmHWM"] for pid in pool.process_ids]
    wall_s = time.monotonic() - start[0]
    stopping.set()
    thread.join(10.0)
    pool.stop()
    return {"replay_processes": processes, "replay_speed": speed, "replay_wall_s": round(wall_s, 1),
            "replay_dispatched": scheduler.stats.dispatched, "replay_answered": stats.issued,
            "replay_rate_per_s": round(scheduler.stats.dispatched / wall_s) if wall_s else None,
            "sender_peak_rss_kib": sender_peaks_kib, "all_processes_peak_rss_kib": peak_sum_kib,
            "scheduler_process_peak_rss_kib": _common.memory_kib()["VmHWM"],
            "sender_stats": pool.sender_stats}


def child(tracedir: Path, apihost: str | None = None, processes: int = 2, speed: float = 10.0,
          replay_s: float = 30.0) -> dict:
    """Runs in the measured process: validate, then schedule everything on a FakeClock."""
    _common.use_repo_imports()
    from faasload.clock import FakeClock
    from loader.injection.traces import FileTraceSource, list_traces, read_ahead_bytes, scan_trace
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

    read_ahead = read_ahead_bytes(len(paths))
    sources = [FileTraceSource(path, incont="in", outcont="out", read_ahead_bytes=read_ahead) for path in paths]
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
    if apihost is not None:
        figures.update(replay_with_senders(paths, apihost, processes, speed, replay_s))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=1000, help="invocations per trace")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2, help="sender processes (0: skip phase 3)")
    parser.add_argument("--speed", type=float, default=5.0, help="phase 3: how much faster than planned")
    parser.add_argument("--replay-s", type=float, default=30.0, help="phase 3: how long to replay")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--apihost", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.apihost, args.processes, args.speed, args.replay_s)))
        return 0
    tracedir = Path(tempfile.mkdtemp(prefix="faasload-bench-traces-", dir="/tmp"))
    nginx = None
    try:
        start = time.monotonic()
        total = generate(tracedir, args.traces, args.lines, args.seed)
        size_mb = sum(p.stat().st_size for p in tracedir.iterdir()) / 1e6
        print(f"generated {args.traces} traces, {total} invocations, {size_mb:.0f} MB in "
              f"{time.monotonic() - start:.1f} s", file=sys.stderr)
        command = [sys.executable, __file__, "--child", str(tracedir)]
        if args.processes:
            import _nginx
            _common.use_repo_imports()
            nginx = _nginx.start()
            command += ["--apihost", nginx.apihost, "--processes", str(args.processes), "--speed", str(args.speed),
                        "--replay-s", str(args.replay_s)]
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        figures = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if nginx is not None:
            nginx.stop()
        shutil.rmtree(tracedir, ignore_errors=True)
    figures.update(trace_set_mb=round(size_mb, 1), method="real trace reader + scheduler, FakeClock fast-forward, "
                   "no-op dispatch (counts only)")
    peak_mb = figures["peak_rss_kib"] / 1024
    figures["peak_rss_mb"] = round(peak_mb, 1)
    if "sender_peak_rss_kib" in figures:  # every loader process: the scheduler's (its peak) and each sender's
        all_mb = (figures["scheduler_process_peak_rss_kib"] + sum(figures["sender_peak_rss_kib"])) / 1024
        figures["all_processes_peak_rss_mb"] = round(all_mb, 1)
        peak_mb = max(peak_mb, all_mb)
    figures["goal_met"] = peak_mb <= GOAL_MB and figures["dispatched"] == figures["planned"]
    print(f"trace set: {figures['traces']} traces, {figures['planned']} invocations ({size_mb:.0f} MB)")
    print(f"RSS after imports {figures['rss_after_imports_kib'] / 1024:.1f} MB, after validation "
          f"{figures['rss_after_validation_kib'] / 1024:.1f} MB ({figures['validate_cpu_s']} s CPU), after sources "
          f"{figures['rss_after_sources_kib'] / 1024:.1f} MB")
    print(f"scheduled {figures['dispatched']} / {figures['planned']} in {figures['schedule_cpu_s']} s CPU "
          f"({figures['dispatch_per_cpu_s']} invocations per CPU second)")
    if "sender_peak_rss_kib" in figures:
        senders = ", ".join(f"{kib / 1024:.1f}" for kib in figures["sender_peak_rss_kib"])
        print(f"with {figures['replay_processes']} sender processes against nginx, {figures['replay_speed']:g}x "
              f"speed for {figures['replay_wall_s']} s ({figures['replay_dispatched']} dispatched, "
              f"{figures['replay_rate_per_s']}/s, {figures['replay_answered']} answered): scheduler's process peak "
              f"{figures['scheduler_process_peak_rss_kib'] / 1024:.1f} MB, senders' peaks {senders} MB; "
              f"all loader processes: {figures['all_processes_peak_rss_mb']} MB (sum of peaks), "
              f"{figures['all_processes_peak_rss_kib'] / 1024:.1f} MB (largest sum sampled)")
        if figures["replay_answered"] < 0.95 * figures["replay_dispatched"]:
            print("  the senders did not keep up (answered < 95% of dispatched): these peaks hold their backlog, "
                  "run again on a quieter machine or at a lower --speed")
    print(f"peak RSS of all loader processes {peak_mb:.1f} MB (goal ≤ {GOAL_MB} MB): "
          f"{'met' if figures['goal_met'] else 'MISSED'}")
    print(f"results: {_common.write_results('loader_memory', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
