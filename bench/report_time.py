"""How long ``python -m loader.report`` and ``python -m loader.export`` take on a few thousand runs.

    python bench/report_time.py [--runs 5000] [--functions 40] [--duration-s 180] [--samples 20]

Writes a synthetic injection experiment (seeded) through the loader's own store
(:func:`loader.storage.writer.write_batch`) into a throwaway embedded PostgreSQL under /tmp: ``--runs``
runs over ``--duration-s`` seconds spread over ``--functions`` functions (Zipf-like shares),
95% successes with log-normal durations, 5% cold starts, a few throttled, failed and lost runs,
and ``--samples`` monitor samples per successful run (10 ms apart).  A second experiment with
the same shape (another seed) is written for the comparison report.  Then it times, each in a
fresh process: the report of one experiment, the report of both (comparison), the CSV export
and the Parquet export of one.  Prints the figures; asserts nothing.
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
import _common

_common.use_repo_imports()

from faasload import embedded_pg
from loader.storage import experiments, writer
from loader.storage.database import DatabaseConfiguration, create_database
from loader.storage.rows import (
    ResourceSample,
    ResourceSamples,
    RunKey,
    RunParameters,
    RunResources,
    RunStatus,
    RunUpdate,
)


def synthetic_experiment(conn, name: str, *, runs: int, functions: int, duration_s: float, samples: int,
                         seed: int) -> int:
    """Write one synthetic injection experiment; its id."""
    rng = random.Random(seed)
    start_epoch_us = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
    experiment_id = experiments.ensure_experiment(conn, name=name, mode="injection", description="synthetic (bench)",
                                            config={"injection": {"tracedir": "/bench/synthetic"}})
    weights = [1 / (rank + 1) for rank in range(functions)]
    medians_ms = [rng.uniform(5, 400) for _ in range(functions)]
    items: list = []
    per_trace: dict[int, int] = {}
    for _ in range(runs):
        f = rng.choices(range(functions), weights)[0]
        seq = per_trace.get(f, 0)
        per_trace[f] = seq + 1
        key = RunKey(experiment_id, f"user{f:03d}-fn{f:03d}", seq)
        planned_us = int(rng.uniform(0, duration_s) * 1_000_000)
        lateness_us = int(rng.expovariate(1 / 300)) + (int(rng.expovariate(1 / 20_000)) if rng.random() < 0.01 else 0)
        roll = rng.random()
        common = dict(key=key, user_name=f"user{f:03d}", action_name=f"fn{f:03d}", planned_offset_us=planned_us,
                      input_object=f"{seq % 10}.jpg")
        if roll < 0.02:
            items.append(RunUpdate(**common, status=RunStatus.THROTTLED, sent_offset_us=planned_us + lateness_us,
                                   lateness_us=lateness_us, invoke_http_status=429, invoke_attempts=1,
                                   status_reason="429 Too Many Requests"))
            continue
        sent_us = planned_us + lateness_us
        if roll < 0.03:
            items.append(RunUpdate(**common, status=RunStatus.LOST, sent_offset_us=sent_us, lateness_us=lateness_us,
                                   invoke_http_status=202, invoke_attempts=1, activation_id=f"{rng.getrandbits(128):032x}",
                                   status_reason="no record by the final deadline"))
            continue
        cold = rng.random() < 0.05
        init_ms = int(rng.uniform(100, 600)) if cold else None
        wait_ms = int(rng.expovariate(1 / 3)) + (init_ms or 0) // 4
        run_ms = max(1, int(rng.lognormvariate(0, 0.4) * medians_ms[f]))
        duration_ms = run_ms + (init_ms or 0)
        start_ms = (start_epoch_us + sent_us) // 1000 + 2 + wait_ms
        status = RunStatus.APPLICATION_ERROR if roll < 0.05 else RunStatus.SUCCESS
        items.append(RunUpdate(**common, status=status, sent_offset_us=sent_us, lateness_us=lateness_us,
                               invoke_http_status=202, invoke_attempts=1, activation_id=f"{rng.getrandbits(128):032x}",
                               start_ms=start_ms, end_ms=start_ms + duration_ms, duration_ms=duration_ms,
                               wait_time_ms=wait_ms, init_time_ms=init_ms, cold_start=cold, kind="python:3.11",
                               memory_limit_mb=256, response_size_bytes=200, output_size_bytes=1000,
                               extract_ms=1.25, transform_ms=run_ms * 0.8, load_ms=0.5,
                               result_error="failed" if status is RunStatus.APPLICATION_ERROR else None,
                               resources_status="ok"))
        items.append(RunParameters(key, (("incont", "in"), ("object", f"{seq % 10}.jpg"), ("outcont", "out"))))
        peak = int(rng.uniform(20, 200) * 2**20)
        first_us = start_ms * 1000
        items.append(RunResources(key, ResourceSamples.of(
            ResourceSample(first_us + i * 10_000, peak * (i + 1) // samples, i * 9_000_000, peak // 2)
            for i in range(samples))))
    for offset in range(0, len(items), 2000):
        writer.write_batch(conn, items[offset:offset + 2000])
    experiments.end_experiment(conn, experiment_id, {"planned": runs, "issued": runs}, start_epoch_us)
    return experiment_id


def timed(args: list[str]) -> float:
    start = time.monotonic()
    result = subprocess.run([sys.executable, *args], check=False, cwd=_common.ROOT, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--functions", type=int, default=40)
    parser.add_argument("--duration-s", type=float, default=180.0)
    parser.add_argument("--samples", type=int, default=20)
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="faasload-bench-report-", dir="/tmp"))
    scratch.chmod(0o755)
    server = embedded_pg.start_cluster(scratch / "pgdata", durable=False)
    try:
        admin = DatabaseConfiguration(user=server.user, host=server.host, port=server.port, database="postgres")
        create_database(admin, "bench")
        database = DatabaseConfiguration(user=server.user, host=server.host, port=server.port, database="bench")
        conn = experiments.open_store(database)
        t0 = time.monotonic()
        for index, seed in enumerate((1, 2)):
            synthetic_experiment(conn, f"synthetic-{index + 1}", runs=options.runs, functions=options.functions,
                                 duration_s=options.duration_s, samples=options.samples, seed=seed)
        conn.close()
        write_s = time.monotonic() - t0
        dsn = f"host={server.host} port={server.port} user={server.user} dbname=bench"
        figures = {
            "runs_per_experiment": options.runs, "functions": options.functions, "duration_s": options.duration_s,
            "samples_per_success": options.samples, "write_two_experiments_s": round(write_s, 2),
            "report_one_s": round(timed(["-m", "loader.report", "synthetic-1", "--dsn", dsn,
                                         "--out", str(scratch / "report1")]), 2),
            "report_two_compared_s": round(timed(["-m", "loader.report", "synthetic-1", "synthetic-2", "--dsn", dsn,
                                                  "--out", str(scratch / "report2")]), 2),
            "export_csv_s": round(timed(["-m", "loader.export", "synthetic-1", "--dsn", dsn, "--format", "csv",
                                         "--out", str(scratch / "csv")]), 2),
            "export_parquet_s": round(timed(["-m", "loader.export", "synthetic-1", "--dsn", dsn, "--format",
                                             "parquet", "--out", str(scratch / "parquet")]), 2),
            "report_one_html_bytes": (scratch / "report1" / "index.html").stat().st_size,
            "report_two_html_bytes": (scratch / "report2" / "index.html").stat().st_size,
        }
        print(json.dumps({"machine": _common.machine(), **figures}, indent=2))
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
