"""Replay an imported Azure 2019 workload on localwhisk and compare what was recorded with the trace.

    python bench/workloads_replay.py [--minutes 3] [--runs uniform:nearest,equidistant:nearest,uniform:calibrated]
                                     [--cpu-share F] [--memory median|draw] [--draws stratified|quantiles|iid]
                                     [--end-early-ms F] [--rows-out DIR]

For each run ``IAT:MAP``: ``python -m loader.workloads azure2019`` converts the first
``--minutes`` of ``tests/data/azure2019-sample`` (seed ``--seed``) with that ``--iat`` and
``--map``; a fresh localwhisk (``--backend``, throttles raised above the trace's peaks, a
``--user-memory-mb`` container pool) gets the traces' users, the manifest's actions and the
example inputs; ``python -m loader --validate`` then ``python -m loader`` inject at 1x with the
monitor on (a Tansu broker for the user events, the embedded PostgreSQL for the dataset).

Prints per run: whether every function's per-minute counts in ``runs`` equal the source's,
statuses, lateness (sent − planned) p50/p99/p99.9/max, cold starts; for ``calibrated`` runs,
per function the recorded median duration and median per-run peak memory (warm runs) against
the trace's median duration and memory, and how many are within 10% (functions inside the
platform's limits, i.e. without a clamp); the same for the duration against the median of the
durations these warm runs asked for (``duration_ms``, drawn from the trace's percentiles: with
few runs their median is not the trace's), what the platform added to each warm run
(recorded duration − the action's own run time, ``transform_ms``) and what it recorded beyond
what was asked (recorded − asked per run, and the figure to give ``--end-early-ms`` in a second
pass: the median over functions of their median shift, :mod:`loader.workloads.end_early`).  A duration is also judged within 10% *or* 1 ms, the record's resolution
(a function of 2 ms cannot be within 0.2 ms in whole milliseconds).  The host's load average
is printed with the figures: on a shared machine they are noisy.
Figures go to ``bench/results/workloads_replay-*.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

_common.use_repo_imports()

import yaml  # noqa: E402

from faasload import embedded_pg, tansu  # noqa: E402
from faasload.procs import stop_process, wait_until  # noqa: E402

SAMPLE = _common.ROOT / "tests" / "data" / "azure2019-sample"
FIRST_MINUTE = 540


def run(*command: str, cwd: Path = _common.ROOT) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *command], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed ({done.returncode}):\n{done.stdout[-2000:]}\n"
                         f"{done.stderr[-3000:]}")
    return done


def start_monitor(root: Path) -> tuple[subprocess.Popen, Path]:
    (root / "run").mkdir(parents=True, exist_ok=True)
    config = root / "monitor.yml"
    config.write_text(yaml.safe_dump({"sockets": {"notification": str(root / "run" / "notif"),
                                                  "measurement": str(root / "run" / "meas")}}))
    log = open(root / "monitor.log", "wb")  # noqa: SIM115 (kept open for the process's life)
    process = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config)], cwd=_common.ROOT,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: (root / "run" / "meas").exists() and (root / "run" / "notif").exists(), timeout_s=30,
               what="monitor", process=process)
    return process, root / "run"


def start_localwhisk(root: Path, broker: str, notif: Path, backend: str, user_memory_mb: int
                     ) -> tuple[subprocess.Popen, Path, str]:
    config = root / "localwhisk.yml"
    config.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": 0}, "state": {"dir": str(root / "state")},
        "storage": {"dir": str(root / "storage")},
        "containers": {"backend": backend, "user_memory_mb": user_memory_mb},
        "limits": {"actions_per_minute": 1_000_000, "concurrent_actions": 10_000},
        "events": {"enabled": True, "bootstrap_servers": [broker]},
        "monitor": {"notification_socket": str(notif)}}))
    log = open(root / "localwhisk.log", "wb")  # noqa: SIM115 (kept open for the process's life)
    process = subprocess.Popen([sys.executable, "-m", "localwhisk", "--config", str(config)], cwd=_common.ROOT,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    apihost = root / "state" / "apihost"
    wait_until(apihost.exists, timeout_s=60, what="localwhisk", process=process)
    return process, config, apihost.read_text().strip()


def loader_config(root: Path, apihost: str, broker: str, tracedir: Path, meas: Path, pgdata: Path, name: str) -> Path:
    path = root / "loader.yml"
    path.write_text(yaml.safe_dump({
        "openwhisk": {"apihost": apihost, "authkeys": str(root / "authkeys"),
                      "user_events": {"bootstrap_servers": [broker]}},
        "injection": {"tracedir": str(tracedir), "progress_interval_s": 30.0},
        "completion": {"final_deadline_s": 300.0},
        "database": {"embedded_datadir": str(pgdata)},
        "monitor": {"enabled": True, "measurement_socket": str(meas)},
        "experiment": {"description": f"bench/workloads_replay.py {name}"},
        "statedir": str(root / "loader-state")}))
    return path


def create_users(root: Path, tracedir: Path) -> int:
    from loader.platform.keys import store_key
    from localwhisk.users import UserStore
    users = sorted({p.name.split("-")[0] for p in tracedir.iterdir()})
    store = UserStore(root / "state")
    for user in users:
        store_key(root / "authkeys", user, store.create(user).authkey)
    return len(users)


def query(pgdata: Path, sql: str) -> tuple[list[tuple], dict]:
    """The rows of ``sql``, and the ``--end-early-ms`` figure of the latest experiment."""
    import psycopg2

    from loader.workloads import end_early
    server = embedded_pg.start_cluster(pgdata)
    try:
        conn = psycopg2.connect(host=server.host, port=server.port, user=server.user, dbname="faasload")
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
            cur.execute("SELECT name FROM experiments ORDER BY experiment_id DESC LIMIT 1")
            latest = cur.fetchone()
            assert latest is not None, "the injection created no experiment"
            experiment = latest[0]
        with conn:
            figure = end_early.measure(conn, experiment)
        conn.close()
        return rows, {"end_early_ms": figure.end_early_ms, "functions": figure.functions}
    finally:
        server.stop()


def pct(values: list[float], q: float) -> float | None:
    value = _common.percentile(values, q)
    return None if value is None else round(value, 3)


def figures(out: Path, rows: list[tuple], minutes: int, calibrated: bool) -> dict:
    """rows: (trace_name, planned_offset_us, lateness_us, status, cold_start, duration_ms, peak_bytes, transform_ms,
    asked_duration_ms)."""
    with open(SAMPLE / "invocations.csv", newline="") as stream:
        source = {r[2]: [int(c) for c in r[4:4 + minutes]] for r in list(csv.reader(stream))[1:]}
    with open(out / "mapping.csv", newline="") as stream:
        mapping = {r["trace_file"]: r for r in csv.DictReader(stream)}
    by_trace: dict[str, list[tuple]] = {}
    for row in rows:
        by_trace.setdefault(row[0], []).append(row)
    mismatched = []
    for trace, entry in mapping.items():
        per_minute = [0] * minutes
        for row in by_trace.get(trace, []):
            per_minute[row[1] // 60_000_000] += 1
        if per_minute != source[entry["source_function"]]:
            mismatched.append(trace)
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row[3]] = statuses.get(row[3], 0) + 1
    lateness_ms = [row[2] / 1000 for row in rows if row[2] is not None]
    cold = [row for row in rows if row[4]]
    result = {"invocations": len(rows), "functions": len(mapping), "per_minute_counts_equal": not mismatched,
              "mismatched_traces": mismatched, "statuses": statuses,
              "lateness_ms": {"p50": pct(lateness_ms, 50), "p99": pct(lateness_ms, 99), "p999": pct(lateness_ms, 99.9),
                              "max": round(max(lateness_ms), 3) if lateness_ms else None,
                              "over_5ms": sum(1 for v in lateness_ms if v > 5)},
              "cold_starts": len(cold), "cold_share": round(len(cold) / len(rows), 4) if rows else None,
              "functions_with_a_cold_start": len({row[0] for row in cold})}
    if calibrated:
        result["per_function"] = compare(mapping, by_trace)
    return result


def compare(mapping: dict, by_trace: dict) -> dict:
    table, within = [], {"duration": 0, "duration_or_1ms": 0, "memory": 0, "both": 0, "duration_vs_asked": 0,
                         "inside_limits": 0}
    added = [row[5] - row[7] for rows in by_trace.values() for row in rows
             if row[3] == "success" and not row[4] and row[7] is not None]
    beyond = [row[5] - float(row[8]) for rows in by_trace.values() for row in rows
              if row[3] == "success" and not row[4] and row[8] is not None]
    for trace, entry in sorted(mapping.items()):
        warm = [row for row in by_trace.get(trace, []) if row[3] == "success" and not row[4]]
        peaks = [row[6] / 2**20 for row in warm if row[6] is not None]
        if not warm:
            continue
        trace_ms, trace_mb = float(entry["duration_ms_p50"]), float(entry["memory_mb_p50"])
        recorded_ms = statistics.median(row[5] for row in warm)
        inside_ms = statistics.median(row[7] for row in warm if row[7] is not None)
        recorded_mb = statistics.median(peaks) if peaks else None
        asked_ms = statistics.median(float(row[8]) for row in warm)
        duration_ok = abs(recorded_ms - trace_ms) <= 0.1 * trace_ms
        asked_ok = abs(recorded_ms - asked_ms) <= 0.1 * asked_ms
        memory_ok = recorded_mb is not None and abs(recorded_mb - trace_mb) <= 0.1 * trace_mb
        inside = not entry["clamps"]
        if inside:
            within["inside_limits"] += 1
            within["duration"] += duration_ok
            within["duration_or_1ms"] += duration_ok or abs(recorded_ms - trace_ms) <= 1
            within["memory"] += memory_ok
            within["both"] += duration_ok and memory_ok
            within["duration_vs_asked"] += asked_ok
        table.append({"trace": trace, "warm_runs": len(warm), "trace_duration_ms_p50": trace_ms,
                      "asked_duration_ms_median": round(asked_ms, 1),
                      "recorded_duration_ms_median": recorded_ms, "action_wall_ms_median": round(inside_ms, 1),
                      "trace_memory_mb_p50": trace_mb,
                      "recorded_peak_memory_mb_median": None if recorded_mb is None else round(recorded_mb, 1),
                      "inside_limits": inside, "clamps": entry["clamps"]})
    return {"within_10_percent": within, "platform_added_ms": _common.spread(added),
            "recorded_minus_asked_ms": _common.spread(beyond), "functions": table}


def show(name: str, f: dict) -> None:
    lat = f["lateness_ms"]
    print(f"{name}: {f['invocations']} invocations of {f['functions']} functions; per-minute counts equal the "
          f"source: {'yes' if f['per_minute_counts_equal'] else 'NO ' + str(len(f['mismatched_traces']))}; "
          f"statuses {f['statuses']}")
    print(f"  lateness p50 {lat['p50']} ms, p99 {lat['p99']} ms, p99.9 {lat['p999']} ms, max {lat['max']} ms, "
          f"> 5 ms: {lat['over_5ms']}; cold starts {f['cold_starts']} ({100 * (f['cold_share'] or 0):.1f}%) in "
          f"{f['functions_with_a_cold_start']} functions")
    if "per_function" in f:
        w = f["per_function"]["within_10_percent"]
        added = f["per_function"]["platform_added_ms"]
        print(f"  within 10% of the trace (of {w['inside_limits']} functions inside the limits, warm runs): "
              f"median duration {w['duration']} ({w['duration_or_1ms']} within 10% or 1 ms), median peak memory "
              f"{w['memory']}, both {w['both']}; "
              f"median duration within 10% of the median asked by the same runs: {w['duration_vs_asked']}")
        print(f"  the platform's share of a warm run's duration (recorded - the action's own): p50 {added['p50']} ms, "
              f"p90 {added['p90']} ms, p99 {added['p99']} ms; load average {f['load_average']}")
        beyond, early = f["per_function"]["recorded_minus_asked_ms"], f["per_function"]["end_early"]
        print(f"  recorded - asked, per warm run: p50 {beyond['p50']} ms, p90 {beyond['p90']} ms; median over "
              f"{early['functions']} functions of their median shift (--end-early-ms of a second pass, "
              f"docs/workloads.md): {early['end_early_ms']} ms")
        print("  trace | warm runs | p50 duration trace (asked) → recorded (in the action) ms | p50 memory trace → "
              "recorded MB | clamps")
        for row in f["per_function"]["functions"]:
            print(f"  {row['trace']} | {row['warm_runs']} | {row['trace_duration_ms_p50']} "
                  f"({row['asked_duration_ms_median']}) → "
                  f"{row['recorded_duration_ms_median']} ({row['action_wall_ms_median']}) | {row['trace_memory_mb_p50']} → "
                  f"{row['recorded_peak_memory_mb_median']} | {row['clamps'] or '-'}")


def one_run(scratch: Path, index: int, iat: str, map_mode: str, args, broker, meas: Path, notif: Path) -> dict:
    root = scratch / f"run{index}"
    root.mkdir()
    out = root / "workload"
    extra = (["--cpu-share", str(args.cpu_share), "--memory", args.memory, "--draws", args.draws,
              "--end-early-ms", str(args.end_early_ms)] if map_mode == "calibrated" else [])
    conversion = run("-m", "loader.workloads", "azure2019", "--trace", str(SAMPLE), "--out", str(out),
                     "--seed", str(args.seed), "--minutes", f"{FIRST_MINUTE}:{FIRST_MINUTE + args.minutes}",
                     "--iat", iat, "--map", map_mode, "--runtime-memory-mb", str(args.runtime_memory_mb), *extra)
    print(conversion.stdout.strip())
    needed_mb = json.loads((out / "workload.json").read_text())["limits"]["pool_memory_mb"]
    if needed_mb is not None and needed_mb > args.user_memory_mb:
        print(f"note: --user-memory-mb {args.user_memory_mb} is below the {needed_mb} MB that hold every container "
              "of this workload: localwhisk will evict idle containers, and more invocations start cold than "
              "predicted")
    localwhisk, _, apihost = start_localwhisk(root, broker.bootstrap, notif, args.backend, args.user_memory_mb)
    try:
        config = loader_config(root, apihost, broker.bootstrap, out / "traces", meas, scratch / "pgdata",
                               f"{iat}:{map_mode}")
        users = create_users(root, out / "traces")
        run("-m", "loader.deploy", "--config", str(config), "actions", "--manifest", str(out / "manifest.yml"))
        run("-m", "actions.inputs", "--out", str(root / "storage" / "faasload-inputs"), "--image", "10", "--audio",
            "10", "--video", "10")
        (root / "storage" / "faasload-outputs").mkdir(parents=True, exist_ok=True)
        print(run("-m", "loader", "--config", str(config), "--validate").stdout.strip())
        started = time.monotonic()
        injected = run("-m", "loader", "--config", str(config))
        wall_s = time.monotonic() - started
        load_average = [round(v, 1) for v in os.getloadavg()]
    finally:
        stop_process(localwhisk, timeout_s=60)
    rows, end_early = query(scratch / "pgdata", """
        SELECT r.trace_name, r.planned_offset_us, r.lateness_us, r.status, r.cold_start, r.duration_ms, m.peak,
               r.transform_ms,
               (SELECT p.value FROM parameters p WHERE p.run_id = r.run_id AND p.name = 'duration_ms')
        FROM runs r LEFT JOIN (SELECT run_id, max(memory_bytes) AS peak FROM resources GROUP BY run_id) m
             USING (run_id)
        WHERE r.experiment_id = (SELECT max(experiment_id) FROM experiments)""")
    if args.rows_out is not None:
        args.rows_out.mkdir(parents=True, exist_ok=True)
        with open(args.rows_out / f"{iat}-{map_mode}.csv", "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["trace_name", "planned_offset_us", "lateness_us", "status", "cold_start", "duration_ms",
                             "peak_memory_bytes", "transform_ms", "asked_duration_ms"])
            writer.writerows(rows)
    result = figures(out, rows, args.minutes, map_mode == "calibrated")
    if "per_function" in result:
        result["per_function"]["end_early"] = end_early
    result.update({"iat": iat, "map": map_mode, "users": users, "loader_wall_s": round(wall_s, 1),
                   "load_average": load_average,
                   "loader_summary": injected.stdout.strip().splitlines()[-12:]})
    show(f"{iat} / {map_mode}", result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument("--runs", default="uniform:nearest,equidistant:nearest,uniform:calibrated",
                        help="comma-separated IAT:MAP")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", default="process", choices=("process", "docker"))
    parser.add_argument("--user-memory-mb", type=int, default=16384, help="localwhisk's container pool")
    parser.add_argument("--cpu-share", type=float, default=1.0, help="calibrated runs")
    parser.add_argument("--runtime-memory-mb", type=float, default=16.0)
    parser.add_argument("--memory", default="median", choices=("median", "draw"), help="calibrated runs")
    parser.add_argument("--draws", default="stratified", choices=("stratified", "quantiles", "iid"),
                        help="calibrated runs: how durations are drawn (docs/workloads.md)")
    parser.add_argument("--rows-out", type=Path, default=None,
                        help="also write every run's row to DIR/IAT-MAP.csv (for your own analysis)")
    parser.add_argument("--end-early-ms", type=float, default=0.0,
                        help="calibrated runs: the converter's --end-early-ms (docs/workloads.md)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="faasload-bench-replay-", dir="/tmp"))
    scratch.chmod(0o755)
    results: dict = {"minutes": args.minutes, "seed": args.seed, "backend": args.backend,
                     "user_memory_mb": args.user_memory_mb, "cpu_share": args.cpu_share, "memory": args.memory,
                     "draws": args.draws, "end_early_ms": args.end_early_ms,
                     "runs": {},
                     "machine": _common.machine()}
    broker = monitor = None
    try:
        broker = tansu.start(scratch / "tansu")
        monitor, sockets = start_monitor(scratch / "monitor")
        for index, spec in enumerate(args.runs.split(",")):
            iat, map_mode = spec.split(":")
            results["runs"][spec] = one_run(scratch, index, iat, map_mode, args, broker, sockets / "meas",
                                            sockets / "notif")
    finally:
        if monitor is not None:
            stop_process(monitor)
        if broker is not None:
            broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"results: {_common.write_results('workloads_replay', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
