"""Several loader shards of one experiment on this machine, against nginx answering like OpenWhisk.

    python bench/scale_out.py [--shards 2] [--rates 1000,2500,5000] [--duration-s 20]

For each rate (invocations/s *per shard*), writes open-loop traces (``--users`` users per shard,
chosen so that they hash to that shard, ``--actions`` traces each, Poisson arrivals, seeded) and
runs ``--shards`` real loaders (``python -m loader --shard I/N``, default settings: 2 sender
processes, 64 invoker threads) as separate processes of one experiment, with the real store
(the embedded PostgreSQL), the real user-event consumer (a Tansu broker; nginx publishes no
event, so every record is polled ``completion:event_timeout_s`` after sending) and the real
coordination (``shards`` table, agreed start ``cluster:start_delay_s`` ahead).  nginx answers
like OpenWhisk (``bench/_nginx.py``: 202 + activation id, a fixed record).  The monitor is off.

Per shard it prints: planned, issued, achieved rate, lateness (sent − planned, from the ``runs``
rows) p50/p99/p99.9/max, invocations later than 5 ms, the loader's CPU over its whole life (its
process and its sender processes, from ``wait4``: checks, injection, completions, the end) and
that CPU per issued invocation (the sizing figure: 1,000 / ms per invocation = invocations/s per
core, when the lateness shows the loader kept up); per run: the start lag of each shard (its scheduler's start, on the
database server's clock, minus the agreed start), the spread between shards, the measured
clock offsets, nginx's CPU and the machine's load average.  Every shard shares this machine's
two cores with nginx, PostgreSQL and the broker: the figures are the *combined* capacity of one
host, and on a loaded machine they measure the other jobs too (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import _nginx  # noqa: E402

_common.use_repo_imports()
LATE_US = 5_000
FAKE_KEY = "00000000-0000-0000-0000-000000000000:benchkey"


def shard_users(shards: int, per_shard: int, tag: str) -> dict[int, list[str]]:
    """``per_shard`` user names for each shard, each hashing to its shard."""
    from loader.cluster.shard import shard_of
    users: dict[int, list[str]] = {k: [] for k in range(1, shards + 1)}
    n = 0
    while any(len(v) < per_shard for v in users.values()):
        name = f"{tag}u{n:05d}"
        owner = users[shard_of(name, shards)]
        if len(owner) < per_shard:
            owner.append(name)
        n += 1
    return users


def write_traces(tracedir: Path, authkeys: Path, users: list[str], *, actions: int, rate_per_s: float,
                 duration_s: float, rng: random.Random) -> int:
    """Poisson traces of ``users`` × ``actions`` adding up to ``rate_per_s`` over ``duration_s``."""
    from loader.platform.keys import store_key
    per_trace = rate_per_s / (len(users) * actions)
    limit_us = int(duration_s * 1_000_000)
    planned = 0
    for user in users:
        store_key(authkeys, user, FAKE_KEY)
        for a in range(actions):
            rows, offset_us, previous_us = [], 0, 0
            while True:
                offset_us += max(1, int(rng.expovariate(per_trace) * 1_000_000))
                if offset_us > limit_us:
                    break
                wait_us, previous_us = offset_us - previous_us, offset_us
                rows.append(f"{wait_us // 1_000_000}.{wait_us % 1_000_000:06d}\tinputs/{rng.randrange(100)}.jpg\n")
            (tracedir / f"{user}-action{a:02d}").write_text("".join(rows))
            planned += len(rows)
    return planned


def wait_all(processes: dict[int, subprocess.Popen], deadline_s: float) -> dict[int, tuple[float, float]]:
    """Wait for every loader; per shard (CPU s of the loader and of the children it reaped, i.e. its
    sender processes, from wait4's rusage; when it ended, monotonic)."""
    usage: dict[int, tuple[float, float]] = {}
    while len(usage) < len(processes) and time.monotonic() < deadline_s:
        for shard, process in processes.items():
            if shard in usage:
                continue
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                usage[shard] = (round(rusage.ru_utime + rusage.ru_stime, 3), time.monotonic())
        time.sleep(0.1)
    for shard, process in processes.items():
        if shard not in usage:
            os.killpg(process.pid, 9)
            process.wait()
            usage[shard] = (float("nan"), time.monotonic())
    return usage


def cpu_of(pids: list[int]) -> _common.CpuTimes:
    readings = []
    for pid in pids:
        try:
            readings.append(_common.cpu_times(pid))
        except (OSError, ValueError, IndexError):
            continue
    return _common.total(readings) if readings else _common.CpuTimes(0.0, 0.0, time.monotonic())


def run_rate(args, rate: float, services: dict, work: Path) -> dict:
    import yaml

    from loader.cluster.shard import shard_of
    tag = f"r{int(rate)}t{int(time.time())}"
    directory = work / tag
    tracedir, authkeys = directory / "traces", directory / "authkeys"
    tracedir.mkdir(parents=True)
    rng = random.Random(args.seed)
    users = shard_users(args.shards, args.users, tag)
    planned = {k: write_traces(tracedir, authkeys, names, actions=args.actions, rate_per_s=rate,
                               duration_s=args.duration_s, rng=rng) for k, names in users.items()}
    processes, started_s = {}, {}
    nginx_cpu0 = cpu_of(services["nginx"].pids)
    for shard in range(1, args.shards + 1):
        config = {
            "openwhisk": {"apihost": services["nginx"].apihost, "authkeys": str(authkeys),
                          "user_events": {"bootstrap_servers": [services["broker"].bootstrap]}},
            "injection": {"tracedir": str(tracedir), "progress_interval_s": 5.0, "late_threshold_ms": 5.0},
            "completion": {"event_timeout_s": 1.0, "poll_interval_s": 2.0, "final_deadline_s": 120.0},
            "database": {"host": services["pg"].host, "port": services["pg"].port, "user": services["pg"].user,
                         "database": "postgres"},
            "monitor": {"enabled": False},
            "experiment": {"name": f"bench-scale-out-{tag}"},
            "cluster": {"host": f"bench-shard{shard}", "start_delay_s": args.start_delay_s},
            "statedir": str(directory / f"state{shard}"),
            "logging": {"root": {"level": "WARNING"}},
        }
        path = directory / f"loader{shard}.yml"
        path.write_text(yaml.safe_dump(config))
        out = open(directory / f"loader{shard}.out", "wb")
        started_s[shard] = time.monotonic()
        processes[shard] = subprocess.Popen([sys.executable, "-m", "loader", "--config", str(path),
                                             "--shard", f"{shard}/{args.shards}"], cwd=_common.ROOT, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
    load0 = os.getloadavg()[0]
    usage = wait_all(processes, time.monotonic() + args.duration_s + args.start_delay_s + 300)
    nginx_cpu1 = cpu_of(services["nginx"].pids)
    codes = {shard: process.returncode for shard, process in processes.items()}
    return collect(services["pg"], f"bench-scale-out-{tag}", planned, codes, usage, started_s, shard_of, args.shards,
                   nginx=_common.cpu_share(nginx_cpu0, nginx_cpu1), load=(load0, os.getloadavg()[0]), rate=rate,
                   directory=directory)


def collect(pg, name: str, planned: dict, codes: dict, usage: dict, started_s: dict, shard_of, shards: int, *,
            nginx: dict, load: tuple, rate: float, directory: Path) -> dict:
    import psycopg2
    conn = psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname="postgres")
    with conn.cursor() as cur:
        cur.execute("SELECT experiment_id, summary FROM experiments WHERE name = %s", (name,))
        experiment_id, summary = cur.fetchone()
        cur.execute("SELECT user_name, lateness_us, sent_offset_us FROM runs WHERE experiment_id = %s "
                    "AND lateness_us IS NOT NULL", (experiment_id,))
        rows = cur.fetchall()
    conn.close()
    per_shard: dict[int, dict] = {}
    for shard in range(1, shards + 1):
        mine = [(lateness, sent) for user, lateness, sent in rows if shard_of(user, shards) == shard]
        lateness = [v for v, _ in mine]
        sent = [s for _, s in mine]
        span_s = (max(sent) - min(sent)) / 1e6 if len(sent) > 1 else 0.0
        info = next((s for s in (summary or {}).get("shards", []) if s["shard"] == shard), {})
        per_shard[shard] = {
            "exit_code": codes[shard], "planned": planned[shard], "issued": len(mine),
            "achieved_rate_per_s": round(len(sent) / span_s, 1) if span_s else None,
            "lateness_ms": _common.spread(lateness, scale=1e-3),
            "later_than_5ms": sum(1 for v in lateness if v > LATE_US),
            "statuses": info.get("statuses"), "start_lag_ms": info.get("start_lag_ms"),
            "clock_offset_ms": info.get("clock_offset_ms"),
            "loader_cpu_s": usage[shard][0], "loader_lifetime_s": round(usage[shard][1] - started_s[shard], 1),
            "loader_cpu_ms_per_invocation": round(usage[shard][0] * 1000 / len(mine), 3) if mine else None,
        }
        if codes[shard] != 0:
            per_shard[shard]["output_tail"] = (directory / f"loader{shard}.out").read_text(errors="replace")[-1500:]
    return {"rate_per_shard_per_s": rate, "shards": per_shard,
            "start_spread_ms": (summary or {}).get("start_spread_ms"),
            "clock_uncertainty_ms": (summary or {}).get("clock_uncertainty_ms"),
            "nginx_cpu": nginx, "loadavg_1m_before_after": [round(v, 2) for v in load]}


def show(figures: dict) -> None:
    print(f"\n== {figures['rate_per_shard_per_s']:g} invocations/s per shard; load average "
          f"{figures['loadavg_1m_before_after'][0]} -> {figures['loadavg_1m_before_after'][1]}; "
          f"start spread {figures['start_spread_ms']} ms (clock ± {figures['clock_uncertainty_ms']} ms); "
          f"nginx {figures['nginx_cpu']['pct_of_one_core']}% of a core")
    for shard, s in figures["shards"].items():
        late = s["lateness_ms"]
        print(f"  shard {shard}: exit {s['exit_code']}, {s['issued']}/{s['planned']} issued, "
              f"{s['achieved_rate_per_s']}/s, lateness p50 {late['p50']} p99 {late['p99']} p99.9 {late['p999']} "
              f"max {late['max']} ms, > 5 ms: {s['later_than_5ms']}, start lag {s['start_lag_ms']} ms, "
              f"loader CPU {s['loader_cpu_s']} s in {s['loader_lifetime_s']} s "
              f"({s['loader_cpu_ms_per_invocation']} ms per invocation)")
        if "output_tail" in s:
            print("    " + s["output_tail"].replace("\n", "\n    "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--rates", default="1000,2500,5000", help="invocations/s per shard, comma-separated")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--users", type=int, default=25, help="users per shard")
    parser.add_argument("--actions", type=int, default=4, help="traces (actions) per user")
    parser.add_argument("--start-delay-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from faasload import embedded_pg, tansu
    work = Path(tempfile.mkdtemp(prefix="faasload-bench-scale-out-", dir="/tmp"))
    work.chmod(0o755)
    services: dict = {}
    results = []
    try:
        services["nginx"] = _nginx.start()
        services["pg"] = embedded_pg.start_cluster(work / "pgdata", durable=False)
        services["broker"] = tansu.start(work / "tansu")
        print(f"machine: {_common.machine()}")
        for rate in (float(r) for r in args.rates.split(",")):
            figures = run_rate(args, rate, services, work)
            show(figures)
            results.append(figures)
    finally:
        if "broker" in services:
            services["broker"].stop()
        if "pg" in services:
            services["pg"].stop(mode="immediate")
        if "nginx" in services:
            services["nginx"].stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nresults: {_common.write_results('scale_out', {'args': vars(args), 'runs': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
