"""The scheduler's process: CPU µs per invocation, against the raw read + pipe round trip of the same bytes.

    python bench/scheduler_cost.py [--traces 100] [--invocations 300000] [--processes 2]

Writes ``--traces`` open-loop traces (Poisson arrivals, seeded, as ``injection_precision.py`` writes
them: 10,000 invocations/s in all) and, in a fresh child process, runs what the loader's
scheduler process does for each invocation, with the real code:

* reads its trace line (:class:`loader.injection.traces.FileTraceSource`, the run's read-ahead);
* hands it out (:class:`loader.scheduler.Scheduler`, its ``run``) **on a FakeClock**, as a
  scheduler on time does with the real clock, but without sleeping: with the sender processes'
  lead (:data:`loader.sending.processes.LEAD_S`), one tick per half a lead of invocations;
* writes it to a sender process (:class:`loader.sending.processes.ProcessInvokerPool`: the
  batch of the tick, pickled, one pipe write per sender), reads the answers and records them
  (:class:`loader.storage.recorder.Recorder` to a null sink; completion tracker off).

The sender processes are **stand-ins** that answer each batch at once with 202s: no HTTP, whose
cost is the senders' own (``injection_precision.py`` measures the whole). So the figure depends
neither on a platform nor on the machine's load: it is CPU time (user + system of every thread
of the scheduler's process), not wall time.

**Physical reference, in the same run**: the same process then reads the same trace files
(``os.read``, 64 KiB), writes their bytes to a pipe (``cat`` reading it) in as many writes as the
scheduler's process wrote dispatch batches, and makes as many reads of an answer's size from a
pipe that is never empty: the system calls any design makes, without Python around them and
without waiting on a peer (a round trip's wake-ups made an unstable reference: 2.5 to 11 µs).  The ratio is the scheduler's CPU per invocation over the reference's.
Goal (issue 17): ≤ 40 µs per invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from injection_precision import FAKE_KEY, NullSink, NullTracker, write_traces  # noqa: E402

GOAL_US = 40.0
#: The size of one answer message (a pickled answer tuple and its header), for the reference's reads.
ANSWER_BYTES = 80
RATE_PER_S = 10_000.0


def answering_sender(number, settings, keys, conn, cancel, log_level, max_in_flight) -> None:
    """A stand-in sender process (same arguments and messages as ``sender_main``): 202 for every request, at once."""
    from loader.child_pipes import READY
    conn.send(READY)
    answered = 0
    while True:
        message = conn.recv()
        if message is None:
            break
        now_s = time.monotonic()
        answers = [(ticket, now_s, "accepted", 1, f"{ticket:032x}", 202, None) for ticket, *_ in message]
        conn.send_bytes(pickle.dumps(answers, pickle.HIGHEST_PROTOCOL))
        answered += len(answers)
    conn.send(("stats", {"answered": answered}))
    conn.close()


def cpu_s() -> float:
    """User + system time of every thread of this process."""
    times = os.times()
    return times.user + times.system


def measure_scheduler(paths: list[Path], processes: int) -> dict:
    from faasload.clock import FakeClock, RealClock
    from loader.injection.traces import FileTraceSource, read_ahead_bytes, scan_trace
    from loader.platform.client import ClientSettings
    from loader.platform.keys import parse_key
    from loader.scheduler import Scheduler
    from loader.sending.processes import ProcessInvokerPool
    from loader.storage.recorder import Recorder
    from loader.storage.summary import RunStats

    scans = [scan_trace(path) for path in paths]
    planned = sum(scan.invocations for scan in scans)
    keys = {user: parse_key(FAKE_KEY, user, "bench") for user in {scan.name.user for scan in scans}}
    stats = RunStats(5_000, planned)
    recorder = Recorder(NullSink(), 1, stats)
    pool = ProcessInvokerPool(processes, ClientSettings("http://127.0.0.1:9", timeout_s=10.0), keys, recorder,
                              NullTracker(), clock=RealClock(spin_s=0.0), start_s=lambda: 0.0,
                              stopping=threading.Event(), sender=answering_sender)
    pool.start()
    clock = FakeClock()
    read_ahead = read_ahead_bytes(len(scans))
    sources = [FileTraceSource.of_scan(scan, incont="in", outcont="out", read_ahead_bytes=read_ahead)
               for scan in scans]
    cpu0, wall0 = cpu_s(), time.monotonic()
    scheduler = Scheduler(sources, pool.submit, clock=clock, start_s=clock.monotonic_s(), flush=pool.flush,
                          lead_s=pool.lead_s)   # as loader.pipeline wires it
    ticks = 0
    tick = scheduler.tick

    def counted_tick() -> float | None:
        nonlocal ticks
        ticks += 1
        return tick()

    scheduler.tick = counted_tick  # type: ignore[method-assign]
    scheduler.run(threading.Event())
    while stats.issued < scheduler.stats.dispatched:  # every answer recorded (sleeping costs no CPU)
        time.sleep(0.001)
    cpu1, wall1 = cpu_s(), time.monotonic()
    pool.stop()
    dispatched = scheduler.stats.dispatched
    return {"planned": planned, "dispatched": dispatched, "recorded": stats.issued, "ticks": ticks,
            "dispatch_messages": pool.stats.dispatch_messages, "answer_messages": pool.stats.answer_messages,
            "read_ahead_bytes": read_ahead, "cpu_s": round(cpu1 - cpu0, 3), "wall_s": round(wall1 - wall0, 3),
            "us_per_invocation": round((cpu1 - cpu0) / dispatched * 1e6, 2),
            "peak_rss_mb": round(_common.memory_kib()["VmHWM"] / 1024, 1)}


def measure_reference(paths: list[Path], messages: int, invocations: int) -> dict:
    """Read the trace files, write their bytes to a pipe in ``messages`` writes, and make as many reads of
    an answer's size from a pipe that is never empty: the system calls alone, without waiting on a peer."""
    cpu0 = cpu_s()
    parts = []
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
        os.close(fd)
    data = b"".join(parts)
    sink = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, bufsize=0)
    source = subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE, bufsize=0)
    assert sink.stdin is not None and source.stdout is not None
    out_fd, in_fd = sink.stdin.fileno(), source.stdout.fileno()
    size = -(-len(data) // messages)
    for start in range(0, len(data), size):
        os.write(out_fd, data[start:start + size])
        os.read(in_fd, ANSWER_BYTES)
    cpu1 = cpu_s()
    sink.stdin.close()
    sink.wait()
    source.kill()
    source.wait()
    return {"bytes": len(data), "messages": messages, "cpu_s": round(cpu1 - cpu0, 3),
            "us_per_invocation": round((cpu1 - cpu0) / invocations * 1e6, 3)}


def child(tracedir: Path, processes: int) -> dict:
    _common.use_repo_imports()
    from loader.injection.traces import list_traces
    paths, _ = list_traces(tracedir)
    scheduler = measure_scheduler(paths, processes)
    reference = measure_reference(paths, max(1, scheduler["dispatch_messages"]), scheduler["dispatched"])
    ratio = scheduler["us_per_invocation"] / reference["us_per_invocation"] if reference["us_per_invocation"] else None
    return {"scheduler": scheduler, "reference": reference, "ratio": round(ratio, 1) if ratio else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100, help="trace files (users × actions)")
    parser.add_argument("--invocations", type=int, default=300_000, help="about this many, at 10,000/s in all")
    parser.add_argument("--processes", type=int, default=2, help="sender processes (stand-ins)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.processes)))
        return 0
    tracedir = Path(tempfile.mkdtemp(prefix="faasload-bench-sched-", dir="/tmp"))
    try:
        users = max(1, min(20, args.traces))
        write_traces(tracedir, rate_per_s=RATE_PER_S, duration_s=args.invocations / RATE_PER_S, users=users,
                     actions=max(1, args.traces // users), seed=args.seed)
        load = os.getloadavg()[0]
        out = subprocess.run([sys.executable, __file__, "--child", str(tracedir), "--processes", str(args.processes)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        figures = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tracedir, ignore_errors=True)
    sched, ref = figures["scheduler"], figures["reference"]
    figures.update(goal_us=GOAL_US, met=sched["us_per_invocation"] <= GOAL_US and sched["recorded"] == sched["planned"],
                   load_average_1min=round(load, 2),
                   method="real reader + scheduler (FakeClock, its run() with the senders' lead) + ProcessInvokerPool + Recorder "
                          "(null sink); stand-in senders answering 202 at once; CPU time of the whole process")
    print(f"{sched['planned']} invocations of {args.traces} traces (10,000/s planned), {args.processes} sender "
          f"processes (stand-ins); load average {load:.1f} when started")
    print(f"scheduler's process: {sched['cpu_s']} s CPU = {sched['us_per_invocation']} µs per invocation "
          f"({sched['dispatched']} dispatched, {sched['recorded']} answers recorded; {sched['ticks']} ticks, "
          f"{sched['dispatch_messages']} dispatch writes, {sched['answer_messages']} answer messages; "
          f"peak RSS {sched['peak_rss_mb']} MB)")
    print(f"physical reference: read the same {ref['bytes']} bytes, write them in {ref['messages']} pipe writes and "
          f"make as many pipe reads = {ref['us_per_invocation']} µs per invocation; ratio {figures['ratio']}x")
    print(f"goal ≤ {GOAL_US:g} µs per invocation: {'met' if figures['met'] else 'MISSED'}")
    print(f"results: {_common.write_results('scheduler_cost', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
