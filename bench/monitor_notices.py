"""The monitor under a storm of notices: how many it handles per second, and whether its sampling
keeps its period meanwhile.

    python bench/monitor_notices.py [--clients 4] [--duration-s 10] [--containers 4] [--resolution-ms 10]

An invoker sends two notices per activation (``activation_start``, ``activation_end``), one
connection each, and waits up to 50 ms for the monitor to close the connection, which it does
once it has applied the notice (localwhisk's notifier, docs/monitor.md): a burst of short
activations or a cold-start storm is a storm of notices.  ``--clients`` processes each behave as
that notifier, back to back for ``--duration-s``: connect (within 50 ms, else the notice is
dropped, as the notifier drops it), send, wait up to 50 ms for the close (else the notice is
*unconfirmed* and the client goes on, the monitor still holding it).  Meanwhile the monitor
samples ``--containers`` real cgroups (a sleeping process each) at ``--resolution-ms``.

Figures:

* **notices sent** per second, the share **confirmed** within 50 ms, the connect-to-close time
  (p50, p99), the notices **dropped** (no connection within 50 ms);
* **drained**: how long after the storm a last notice, waited for without limit, is confirmed
  (what the monitor still held); then every activation of the storm is asked on the measurement
  socket: **applied** = the monitor knows it (no notice it accepted was lost);
* **sampling during the storm**: missed samples and the tick lateness (``bench/monitor_cost.py``'s
  figures, from the samples fetched back), the monitor's CPU and its peak RSS (``VmHWM``);
* **the physical reference**, measured first in the same run: the same clients against a server
  that only accepts, reads the line and closes (one thread, ``selectors``), without a monitor:
  what the clients and the kernel reach.  The monitor's confirmed notices per second are printed
  as a ratio to it.

Needs root and writable cgroups (as ``bench/monitor_cost.py``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import monitor_cost  # noqa: E402

_common.use_repo_imports()

#: localwhisk's notifier: connect and send within this, then wait this long for the close.
NOTIFIER_TIMEOUT_S = 0.05
#: How long the last notice after the storm may wait for its close (what the monitor still holds).
DRAIN_TIMEOUT_S = 120.0
#: Activations asked of the monitor at once when checking that every notice was applied.
CHECK_BATCH = 200

BARE_SERVER = r"""
import selectors, socket, sys
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1]); listener.listen(128); listener.setblocking(False)
selector = selectors.DefaultSelector()
selector.register(listener, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in selector.select():
        if key.fileobj is listener:
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ)
        else:
            conn = key.fileobj
            try:
                chunk = conn.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk or b"\n" in chunk:
                selector.unregister(conn)
                conn.close()
"""


# --------------------------------------------------------------------------- the clients

def notify(path: str, message: bytes, timeout_s: float) -> tuple[str, float]:
    """One notice as localwhisk's notifier sends it: ("dropped" | "unconfirmed" | "confirmed", seconds)."""
    began = time.perf_counter()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        try:
            sock.connect(path)
            sock.sendall(message)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return "dropped", time.perf_counter() - began
        try:
            sock.settimeout(max(0.0001, began + 2 * timeout_s - time.perf_counter()))
            while sock.recv(4096):
                pass
        except OSError:
            return "unconfirmed", time.perf_counter() - began
        return "confirmed", time.perf_counter() - began
    finally:
        sock.close()


def client(path: str, containers: list[str], tag: str, start_at: float, duration_s: float, results) -> None:
    """Notices back to back until ``start_at + duration_s`` (epoch s); puts its counts and times."""
    time.sleep(max(0.0, start_at - time.time()))
    counts = {"dropped": 0, "unconfirmed": 0, "confirmed": 0}
    times: list[float] = []
    activations: list[str] = []
    seq = 0
    while time.time() < start_at + duration_s:
        activation = f"{tag}{seq:024x}"   # 32 hex digits, as OpenWhisk's ids
        container = containers[seq % len(containers)]
        now = time.time()
        delivered = True
        for boundary, date in (("activation_start", now), ("activation_end", now + 0.001)):
            message = json.dumps({"action": boundary, "container": container, "activation": activation,
                                  "date": date}).encode() + b"\n"
            outcome, took_s = notify(path, message, NOTIFIER_TIMEOUT_S)
            counts[outcome] += 1
            times.append(took_s)
            delivered = delivered and outcome != "dropped"
        if delivered:   # both notices reached the monitor: it must know the activation
            activations.append(activation)
        seq += 1
    results.put((counts, times, activations))


def storm(path: Path, containers: list[str], clients: int, duration_s: float) -> dict:
    """``clients`` processes sending notices for ``duration_s``; their counts, times and activations."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 1.5   # the spawned clients are ready by then
    processes = [context.Process(target=client, args=(str(path), containers, f"{n:08x}", start_at, duration_s,
                                                      results)) for n in range(clients)]
    for process in processes:
        process.start()
    gathered = [results.get(timeout=duration_s + 60) for _ in processes]
    for process in processes:
        process.join(10)
    counts = {k: sum(c[k] for c, _, _ in gathered) for k in ("dropped", "unconfirmed", "confirmed")}
    times = sorted(t for _, ts, _ in gathered for t in ts)
    return {"counts": counts, "sent": sum(counts.values()), "times_ms": _common.spread(times, scale=1000),
            "activations": [a for _, _, acts in gathered for a in acts], "start_epoch": start_at,
            "end_epoch": start_at + duration_s}


# --------------------------------------------------------------------------- the runs

def reference(directory: Path, clients: int, duration_s: float) -> dict:
    path = directory / "bare.sock"
    server = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(path)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        server.stdout.readline()
        result = storm(path, ["bare"], clients, duration_s)
    finally:
        server.kill()
        server.wait()
    result.pop("activations")
    result["confirmed_per_s"] = round(result["counts"]["confirmed"] / duration_s, 1)
    return result


def measure(directory: Path, clients: int, duration_s: float, containers: int, resolution_s: float) -> dict:
    from faasload.monitor_protocol import ActivationQuery
    from loader.monitor_client import MonitorClient, ResourcesQuery
    from monitor.config import SamplingConfig
    cgroups = monitor_cost.Containers(containers, uuid.uuid4().hex[:6])
    process = None
    try:
        process, notif, meas = monitor_cost.start_monitor(directory, resolution_s, SamplingConfig().stat_every)
        names = [f"storm-{index}" for index in range(containers)]
        for name, path in zip(names, cgroups.paths):
            monitor_cost.send(notif, {"action": "run", "container": name, "cgroup": path})
        time.sleep(1.0)
        cpu0 = _common.cpu_times(process.pid)
        result = storm(notif, names, clients, duration_s)
        cpu1 = _common.cpu_times(process.pid)
        began = time.monotonic()
        outcome, _ = notify(str(notif), json.dumps({"action": "activation_start", "container": names[0],
                                                   "activation": "drain-probe", "date": time.time()}).encode()
                            + b"\n", DRAIN_TIMEOUT_S)
        result["drained_s"] = round(time.monotonic() - began, 3) if outcome == "confirmed" else None
        result["monitor_cpu"] = _common.cpu_share(cpu0, cpu1)
        result["monitor_vmhwm_mb"] = round(_common.memory_kib(process.pid)["VmHWM"] / 1024, 1)
        per_container = []
        for name in names:
            answer = monitor_cost.query(meas, {"container": name, "start": result["start_epoch"],
                                               "end": result["end_epoch"]})
            if isinstance(answer, dict):
                raise RuntimeError(f"query for {name} failed: {answer}")
            per_container.append([s["date"] for s in answer])
        errors = monitor_cost.period_errors(per_container, resolution_s)
        result["sampling"] = {"samples": sum(len(d) for d in per_container),
                              "expected": round(containers * duration_s / resolution_s),
                              "missed": errors.get("missed", 0),
                              "tick_lateness_ms": _common.spread(errors.get("tick_lateness", []), scale=1000)}
        monitor = MonitorClient(meas, timeout_s=30.0)
        activations = result.pop("activations")
        statuses: dict[str, int] = {}
        for first in range(0, len(activations), CHECK_BATCH):
            queries = [ResourcesQuery(ActivationQuery(a)) for a in activations[first:first + CHECK_BATCH]]
            for answer in monitor.samples_for_activations(queries):
                statuses[answer.status.value] = statuses.get(answer.status.value, 0) + 1
        result["activations"] = len(activations)   # both notices delivered
        result["answers"] = statuses
        result["confirmed_per_s"] = round(result["counts"]["confirmed"] / duration_s, 1)
        return result
    finally:
        if process is not None:
            from faasload.procs import stop_process
            stop_process(process)
        cgroups.close()


def show(ref: dict, run: dict, clients: int, duration_s: float) -> None:
    def line(name: str, r: dict) -> str:
        c, t = r["counts"], r["times_ms"]
        return (f"{name}: {r['sent'] / duration_s:,.0f} notices/s sent, {c['confirmed'] / max(1, r['sent']):.1%} "
                f"confirmed within {NOTIFIER_TIMEOUT_S * 1000:g} ms ({r['confirmed_per_s']:,.0f}/s), "
                f"{c['unconfirmed']} unconfirmed, {c['dropped']} dropped; connect to close p50 {t['p50']} ms, "
                f"p99 {t['p99']} ms, max {t['max']} ms")
    print(f"{clients} notifier clients for {duration_s:g} s")
    print("  " + line("bare server (reference)", ref))
    print("  " + line("monitor", run))
    cpu, s = run["monitor_cpu"], run["sampling"]
    drained = "not within the limit" if run["drained_s"] is None else f"{run['drained_s']} s"
    print(f"  monitor: {cpu['pct_of_one_core']}% of one core during the storm, peak RSS {run['monitor_vmhwm_mb']} MB; "
          f"drained {drained} after the storm; the {run['activations']} activations whose two notices it accepted, asked: "
          f"{run['answers']}")
    tick = s["tick_lateness_ms"]
    print(f"  sampling during the storm: {s['samples']} samples of {s['expected']} expected, missed {s['missed']}; "
          f"tick lateness p50 {tick['p50']} ms, p99 {tick['p99']} ms, max {tick['max']} ms")
    print(f"  confirmed notices: {run['confirmed_per_s'] / max(1.0, ref['confirmed_per_s']):.3f} × the bare server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="notifier processes sending back to back")
    parser.add_argument("--duration-s", type=float, default=10.0, help="how long the storm lasts")
    parser.add_argument("--containers", type=int, default=4, help="cgroups the monitor samples meanwhile")
    parser.add_argument("--resolution-ms", type=float, default=10.0, help="the monitor's sampling period")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="faasload-bench-notices-", dir="/tmp"))
    try:
        ref = reference(directory, args.clients, args.duration_s)
        run = measure(directory, args.clients, args.duration_s, args.containers, args.resolution_ms / 1000)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    show(ref, run, args.clients, args.duration_s)
    lost = sum(n for status, n in run["answers"].items() if status != "ok" and status != "empty")
    path = _common.write_results("monitor_notices", {"args": vars(args), "reference": ref, "monitor": run,
                                                     "machine": _common.machine(), "commit": _common.git_commit()})
    print(f"results: {path}")
    if lost:
        print(f"{lost} activations unknown to the monitor although their notices were accepted")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
