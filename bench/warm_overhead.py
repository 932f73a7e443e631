"""What localwhisk adds to a warm activation: the record's duration minus the action's own run time.

    python bench/warm_overhead.py [--concurrency 1,8,24] [--seconds 20] [--duration-ms 10] [--cpu-share 0.03]

Starts a localwhisk (``--backend``, events off, no monitor), creates one user and
``--concurrency`` copies of ``actions/calibrated/replay.py``, then, for each concurrency C,
C client threads invoke their own copy in a loop (blocking invokes) for ``--seconds``, each
asking for ``--duration-ms`` ms at ``--cpu-share``.  Per warm activation: the record's
``duration`` (``end - start``, whole milliseconds, the interval of the ``/run`` call) minus the
action's own ``wall_ms`` (from the start of its ``main`` to its return), split into what came
before ``main`` (the action's ``started_late_ms``: it is deployed with its ``timeout_ms`` as
``--map calibrated`` deploys it, so it times its run from the platform's start and this part
is inside the asked duration) and after it (the rest).  Prints that overhead's p50/p90/p99,
both parts, and how many recorded durations are within 10% of the asked duration,
next to the physical reference measured alongside (same seconds, same load): the round trip of
one byte between two sleeping processes over pipes (two wake-ups; a warm activation has four:
proxy, launcher, proxy, invoker thread), and the load average.
Figures go to ``bench/results/warm_overhead-*.json``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common

_common.use_repo_imports()

import yaml  # noqa: E402

from faasload.procs import stop_process, wait_until  # noqa: E402

REPLAY = _common.ROOT / "actions" / "calibrated" / "replay.py"


#: two processes passing one byte back and forth over pipes every millisecond for SECONDS, with a
#: sleep between round trips (so each round trip is two wake-ups from sleep, like the hops of an
#: activation); prints the round trips' times in ms as JSON
PING_PONG = """
import json, os, sys, time
seconds = float(sys.argv[1])
a_r, a_w = os.pipe(); b_r, b_w = os.pipe()
if os.fork() == 0:
    os.close(a_w)
    os.close(b_r)
    while True:
        byte = os.read(a_r, 1)
        if not byte:
            os._exit(0)
        os.write(b_w, byte)
os.close(a_r)
os.close(b_w)
times, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    time.sleep(0.001)
    start = time.perf_counter()
    os.write(a_w, b"x")
    os.read(b_r, 1)
    times.append((time.perf_counter() - start) * 1e3)
os.close(a_w)
os.wait()
print(json.dumps(times))
"""


def start_reference(seconds: float) -> subprocess.Popen:
    """The physical reference, measured alongside: a pipe round trip between two processes (two wake-ups)."""
    return subprocess.Popen([sys.executable, "-c", PING_PONG, str(seconds)], stdout=subprocess.PIPE, text=True)


def reference_ms(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    return _common.spread(json.loads(out))


def start_localwhisk(root: Path, backend: str) -> tuple[subprocess.Popen, str]:
    config = root / "localwhisk.yml"
    config.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": 0}, "state": {"dir": str(root / "state")},
        "storage": {"dir": str(root / "storage")}, "containers": {"backend": backend, "user_memory_mb": 16384},
        "limits": {"actions_per_minute": 1_000_000, "concurrent_actions": 10_000},
        "events": {"enabled": False}}))
    log = open(root / "localwhisk.log", "wb")  # noqa: SIM115 (kept open for the process's life)
    process = subprocess.Popen([sys.executable, "-m", "localwhisk", "--config", str(config)], cwd=_common.ROOT,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    apihost = root / "state" / "apihost"
    wait_until(apihost.exists, timeout_s=60, what="localwhisk", process=process)
    return process, apihost.read_text().strip()


class Client:
    """Blocking invokes over one keep-alive connection."""

    def __init__(self, apihost: str, authkey: str):
        host, _, port = apihost.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.headers = {"Authorization": "Basic " + base64.b64encode(authkey.encode()).decode(),
                        "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        self.conn.request(method, path, body=json.dumps(body).encode(), headers=self.headers)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")


def measure(apihost: str, authkey: str, concurrency: int, seconds: float, duration_ms: float,
            cpu_share: float) -> dict:
    overheads: list[float] = []
    before_main: list[float] = []
    after_main: list[float] = []
    recorded: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = [0.0]
    ready = threading.Barrier(concurrency + 1, action=lambda: stop_at.__setitem__(0, time.monotonic() + seconds))

    def loop(index: int) -> None:
        client = Client(apihost, authkey)
        params = {"memory_mb": 32, "duration_ms": duration_ms, "cpu_share": cpu_share}
        path = f"/api/v1/namespaces/_/actions/replay{index}?blocking=true"
        try:
            client.call("POST", path, params)  # the cold start, not measured
        finally:
            ready.wait()
        while time.monotonic() < stop_at[0]:
            try:
                status, record = client.call("POST", path, params)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failures.append(repr(exc))
                client = Client(apihost, authkey)
                continue
            result = record.get("response", {}).get("result", {})
            cold = any(a.get("key") == "initTime" for a in record.get("annotations", []))
            with lock:
                if status != 200 or "wall_ms" not in result:
                    failures.append(f"{status} {str(record)[:200]}")
                elif not cold:
                    overheads.append(record["duration"] - result["wall_ms"])
                    recorded.append(record["duration"])
                    if result.get("started_late_ms") is not None:
                        before_main.append(result["started_late_ms"])
                        after_main.append(record["duration"] - result["wall_ms"] - result["started_late_ms"])

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    ready.wait()
    reference = start_reference(seconds)
    for thread in threads:
        thread.join()
    within = sum(1 for d in recorded if abs(d - duration_ms) <= 0.1 * duration_ms)
    return {"pipe_round_trip_ms": reference_ms(reference), "concurrency": concurrency, "warm_activations": len(overheads), "failures": len(failures),
            "first_failures": failures[:3],
            "overhead_ms": _common.spread(overheads), "before_main_ms": _common.spread(before_main),
            "after_main_ms": _common.spread(after_main), "within_10_percent": within,
            "load_average_1min": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8,24", help="comma-separated numbers of client threads")
    parser.add_argument("--seconds", type=float, default=20.0, help="per concurrency")
    parser.add_argument("--duration-ms", type=float, default=10.0)
    parser.add_argument("--cpu-share", type=float, default=0.03)
    parser.add_argument("--backend", default="process", choices=("process", "docker"))
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    root = Path(tempfile.mkdtemp(prefix="faasload-bench-overhead-", dir="/tmp"))
    root.chmod(0o755)
    results: dict = {"backend": args.backend, "duration_ms": args.duration_ms, "cpu_share": args.cpu_share,
                     "seconds": args.seconds, "levels": [], "machine": _common.machine()}
    process = None
    try:
        process, apihost = start_localwhisk(root, args.backend)
        from localwhisk.users import UserStore
        authkey = UserStore(root / "state").create("benchuser").authkey
        client = Client(apihost, authkey)
        code = REPLAY.read_text()
        for index in range(max(levels)):
            status, body = client.call("PUT", f"/api/v1/namespaces/_/actions/replay{index}?overwrite=true",
                                       {"exec": {"kind": "python:3.11", "code": code},
                                        "limits": {"memory": 128, "timeout": 60000},
                                        "parameters": [{"key": "timeout_ms", "value": 60000}]})
            if status != 200:
                raise SystemExit(f"PUT replay{index}: {status} {body}")
        for concurrency in levels:
            level = measure(apihost, authkey, concurrency, args.seconds, args.duration_ms, args.cpu_share)
            results["levels"].append(level)
            o, ref = level["overhead_ms"], level["pipe_round_trip_ms"]
            before, after = level["before_main_ms"], level["after_main_ms"]
            print(f"C={concurrency}: {level['warm_activations']} warm activations of {args.duration_ms} ms; record "
                  f"duration - action's wall time p50 {o['p50']} / p90 {o['p90']} / p99 {o['p99']} ms "
                  f"(before main p50 {before.get('p50')} / p99 {before.get('p99')}, after main p50 "
                  f"{after.get('p50')} / p99 {after.get('p99')}); "
                  f"within 10%: {level['within_10_percent']}; reference pipe round trip (2 wake-ups) alongside "
                  f"p50 {ref['p50']} / p90 {ref['p90']} / p99 {ref['p99']} ms; load average "
                  f"{level['load_average_1min']:.1f}"
                  + (f"; {level['failures']} failures, first: {level['first_failures']}" if level["failures"] else ""))
    finally:
        if process is not None:
            stop_process(process, timeout_s=60)
        shutil.rmtree(root, ignore_errors=True)
    print(f"results: {_common.write_results('warm_overhead', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
