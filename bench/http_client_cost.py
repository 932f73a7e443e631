"""Per-invoke cost of the loader's HTTP client against the standard ``http.client``.

    python bench/http_client_cost.py [--duration-s 5] [--threads 1,8,64]

Closed loop against nginx answering like OpenWhisk's non-blocking invoke (``bench/_nginx.py``):
for each thread count, every thread POSTs invokes for ``--duration-s``:

* ``loader``: :meth:`loader.platform.client.OpenWhiskClient.invoke_once` on the loader's own
  HTTP/1.1 client (``loader/platform/http.py``, one keep-alive connection per thread), exactly as the
  invoker threads call it;
* ``http.client``: one ``http.client.HTTPConnection`` per thread (keep-alive), the same method,
  path, headers (Basic auth, JSON) and body, reading the body and parsing the activation id.

Prints calls/s and CPU per call (user+sys of this process / calls), i.e. the ceiling of one
loader process and what each invocation costs the cores the scheduler shares.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

_common.use_repo_imports()
FAKE_KEY = "00000000-0000-0000-0000-000000000000:benchkey"
PARAMETERS = {"incont": "in", "object": "1.jpg", "outcont": "out", "quality": "42"}


def loader_worker(apihost: str, until_s: float, counts: list, index: int, client) -> None:
    from loader.platform.client import InvokeStatus
    from loader.platform.keys import parse_key
    user = parse_key(FAKE_KEY, "bench", "bench")
    done = 0
    while time.monotonic() < until_s:
        outcome = client.invoke_once(user, "bench", dict(PARAMETERS))
        if outcome.status is not InvokeStatus.ACCEPTED:
            raise RuntimeError(outcome.reason)
        done += 1
    counts[index] = done


def raw_worker(apihost: str, until_s: float, counts: list, index: int, client) -> None:
    host, port = apihost.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    auth = "Basic " + base64.b64encode(FAKE_KEY.encode()).decode()
    done = 0
    while time.monotonic() < until_s:
        body = json.dumps(PARAMETERS)
        connection.request("POST", "/api/v1/namespaces/_/actions/bench?blocking=false", body=body,
                           headers={"Authorization": auth, "Content-Type": "application/json",
                                    "Accept": "application/json"})
        response = connection.getresponse()
        data = response.read()
        if response.status != 202 or not json.loads(data).get("activationId"):
            raise RuntimeError(f"HTTP {response.status}")
        done += 1
    connection.close()
    counts[index] = done


def run(kind: str, apihost: str, threads: int, duration_s: float) -> dict:
    from loader.platform.client import OpenWhiskClient
    client = OpenWhiskClient(apihost, timeout_s=10.0)
    worker = loader_worker if kind == "loader" else raw_worker
    counts = [0] * threads
    cpu0 = _common.cpu_times()
    until_s = time.monotonic() + duration_s
    pool = [threading.Thread(target=worker, args=(apihost, until_s, counts, i, client)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    cpu1 = _common.cpu_times()
    calls = sum(counts)
    used_s = cpu1.total_s - cpu0.total_s
    return {"client": kind, "threads": threads, "calls": calls, "calls_per_s": round(calls / (cpu1.wall_s - cpu0.wall_s)),
            "cpu_per_call_us": round(used_s / calls * 1e6, 1) if calls else None,
            "cpu_pct_of_one_core": round(100 * used_s / (cpu1.wall_s - cpu0.wall_s), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--threads", default="1,8,64")
    args = parser.parse_args(argv)
    import _nginx
    nginx = _nginx.start()
    results = {"runs": []}
    try:
        for threads in [int(t) for t in args.threads.split(",")]:
            for kind in ("loader", "http.client"):
                figures = run(kind, nginx.apihost, threads, args.duration_s)
                results["runs"].append(figures)
                print(f"{kind:12s} {threads:3d} threads: {figures['calls_per_s']:6d} calls/s, "
                      f"{figures['cpu_per_call_us']} µs CPU per call, {figures['cpu_pct_of_one_core']}% of one core")
    finally:
        nginx.stop()
    print(f"results: {_common.write_results('http_client_cost', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
