"""Calibrated replay action: be resident in ``memory_mb`` MiB and run ``duration_ms`` ms, computing ``cpu_share`` of it.

What ``python -m loader.workloads --map calibrated`` maps every trace function onto
(docs/workloads.md): each invocation carries the memory and duration of its trace
function, and this action reproduces them.

* **memory**: the container's memory is brought to ``memory_mb`` MiB by holding 1 MiB
  anonymous mappings, every page written.  The container's memory is its cgroup's usage
  (``memory.usage_in_bytes``, ``memory.current``: what the platform limits and FaaSLoad's
  monitor records) when the process is in a cgroup with a memory limit, as in a container;
  elsewhere the process's resident memory.  They are **kept between invocations** of
  a warm container, as a function app's worker keeps its memory (Azure measures the
  memory of the app's workers over time), and adjusted at the start of each invocation:
  mappings added or released (``munmap``), so an invocation pays only for the change (none
  within 1 MiB of the target: the usage's own noise does not make it churn).
  The runtime's own memory (``baseline_bytes``) is the floor;
* **time**: it returns ``duration_ms`` ms of wall time after the platform started the
  activation (the memory adjustment included), whatever the CPU contention; the last
  millisecond is spun rather than slept, so that the deadline is not overslept.  The platform's
  start is the activation's deadline (``__OW_DEADLINE``, epoch ms, which OpenWhisk sets to the
  start of the ``/run`` call plus the action's timeout) less ``timeout_ms``, the action's timeout,
  which the converter gives the action as a default parameter: so the time the platform spends
  before ``main`` runs (the request to the runtime, its parsing) is inside ``duration_ms``, not
  added to it, and the duration the platform records is the trace's.  Timed from ``main``'s own
  start instead when either is missing, and for a container's first run (its deadline was set
  before ``/init``: a cold start's initialisation is not taken out of its run).  What the
  platform does after ``main`` returns (the response to its ``/run`` call) is in its record
  too: ``end_early_ms`` (default 0; ``--end-early-ms``, measured by a first replay) returns
  that much earlier, never before the memory is adjusted;
* **CPU**: in every 10 ms slice it computes (busy loop) ``cpu_share`` of the slice and
  sleeps the rest; ``cpu_share`` 1 computes all along, 0 only sleeps.

Parameters (numbers, as strings from a trace): ``memory_mb`` (>= 0, default 64),
``duration_ms`` (>= 0, default 100), ``cpu_share`` (0 to 1, default 1), ``timeout_ms`` (the
action's timeout, > 0; none: timed from ``main``), ``end_early_ms`` (>= 0, default 0).  The
result says how it was timed (``timed_from``: ``platform`` or ``action``) and how long after
the platform's start ``main`` began (``started_late_ms``).  Standard library only.
"""

import mmap
import os
import time

PAGE_BYTES = mmap.PAGESIZE
MIB = 1 << 20
SLICE_S = 0.010
#: the last sleep ends this early and the rest is spun, so the deadline is not overslept
SPIN_S = 0.001
#: held memory is left alone when it is within this many MiB of the target (no churn on noise)
TOLERANCE_MIB = 1
#: 1 MiB mappings held by this process (a warm container keeps them for the next invocation)
HELD: list = []
#: runs of this process so far (its first is a container's cold one)
RUNS = [0]


def resident_bytes():
    try:
        with open("/proc/self/statm") as stream:
            return int(stream.read().split()[1]) * PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


def _limited(limit_path):
    try:
        with open(limit_path) as stream:
            text = stream.read().strip()
    except OSError:
        return False
    return text != "max" and text.isdigit() and int(text) < 1 << 60


def container_usage_path():
    """The memory usage file of this process's cgroup if that cgroup has a memory limit (a container), else None."""
    try:
        with open("/proc/self/cgroup") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # cgroup v1
            base = "/sys/fs/cgroup/memory" + path.rstrip("/")
            if _limited(base + "/memory.limit_in_bytes"):
                return base + "/memory.usage_in_bytes"
        elif controllers == "":  # cgroup v2 (its memory controller may be off here)
            base = "/sys/fs/cgroup" + path.rstrip("/")
            if _limited(base + "/memory.max"):
                return base + "/memory.current"
    return None


USAGE_PATH = container_usage_path()


def memory_bytes():
    """The container's memory usage (cgroup) when confined, else the process's resident memory."""
    if USAGE_PATH is not None:
        try:
            with open(USAGE_PATH) as stream:
                return int(stream.read())
        except (OSError, ValueError):
            pass
    return resident_bytes()


def hold(memory_mb):
    """Hold as many touched MiB as bring the memory to ``memory_mb``; what the rest holds (bytes)."""
    baseline = max(0, memory_bytes() - len(HELD) * MIB)
    wanted = max(0, round((memory_mb * MIB - baseline) / MIB))
    if abs(wanted - len(HELD)) <= TOLERANCE_MIB:
        return baseline
    while len(HELD) > wanted:
        HELD.pop().close()
    while len(HELD) < wanted:
        chunk = mmap.mmap(-1, MIB)
        chunk[::PAGE_BYTES] = b"\x01" * (MIB // PAGE_BYTES)
        HELD.append(chunk)
    return baseline


def run_until(deadline, cpu_share):
    """Busy ``cpu_share`` of every slice, sleep the rest, until ``deadline`` (perf_counter)."""
    spins = 0
    while True:
        now = time.perf_counter()
        if now >= deadline:
            return spins
        slice_end = min(deadline, now + SLICE_S)
        busy_end = now + (slice_end - now) * cpu_share
        while time.perf_counter() < busy_end:
            spins += 1
        rest = slice_end - time.perf_counter()
        if slice_end == deadline:  # the last slice: sleep short of the deadline, spin the rest
            if rest > SPIN_S:
                time.sleep(rest - SPIN_S)
            while time.perf_counter() < deadline:
                spins += 1
        elif rest > 0:
            time.sleep(rest)


def started_late_s(timeout_ms, first_run):
    """How long ago the platform started this run (s), from its deadline; None when unknown."""
    deadline_ms = os.environ.get("__OW_DEADLINE")
    if timeout_ms is None or deadline_ms is None or first_run:
        return None
    try:
        platform_start_s = (float(deadline_ms) - timeout_ms) / 1000
    except ValueError:
        return None
    return max(0.0, time.time() - platform_start_s)


def main(args):
    start = time.perf_counter()
    RUNS[0] += 1
    try:
        memory_mb = float(args.get("memory_mb", 64))
        duration_ms = float(args.get("duration_ms", 100))
        cpu_share = float(args.get("cpu_share", 1))
        timeout_ms = float(args["timeout_ms"]) if args.get("timeout_ms") is not None else None
        end_early_ms = float(args.get("end_early_ms", 0))
    except (TypeError, ValueError) as exc:
        return {"error": f"bad parameter: {exc}"}
    if not (memory_mb >= 0 and duration_ms >= 0 and 0 <= cpu_share <= 1 and (timeout_ms is None or timeout_ms > 0)
            and end_early_ms >= 0):
        return {"error": f"bad parameters: memory_mb={memory_mb} duration_ms={duration_ms} cpu_share={cpu_share} "
                         f"timeout_ms={timeout_ms} end_early_ms={end_early_ms} (memory_mb >= 0, duration_ms >= 0, "
                         "0 <= cpu_share <= 1, timeout_ms > 0, end_early_ms >= 0)"}
    late_s = started_late_s(timeout_ms, RUNS[0] == 1)
    deadline = start + (duration_ms - end_early_ms) / 1000 - (late_s or 0.0)
    cpu_start = time.process_time()
    held_before = len(HELD)
    baseline = hold(memory_mb)
    adjusted = time.perf_counter()
    resident = memory_bytes()
    spins = run_until(deadline, cpu_share)
    end = time.perf_counter()
    return {"outputsize": 0, "measured": "cgroup" if USAGE_PATH else "rss", "baseline_bytes": baseline,
            "timed_from": "action" if late_s is None else "platform",
            "started_late_ms": None if late_s is None else late_s * 1e3,
            "held_bytes": len(HELD) * MIB,
            "held_before_bytes": held_before * MIB, "memory_bytes": resident, "adjust_ms": (adjusted - start) * 1e3,
            "wall_ms": (end - start) * 1e3, "cpu_ms": (time.process_time() - cpu_start) * 1e3, "spins": spins,
            "times": {"extract": 0.0, "transform": (end - start) * 1e3, "load": 0.0}}
