"""The store's cost per completion: PostgreSQL's CPU, the writer's, and the wall time, per layout of ``runs``.

    python bench/store_writes.py [--completions 40000] [--rounds 3] [--per-batch 250] [--samples 3]

What the completion path asks of PostgreSQL, without the rest of the pipeline: an embedded
PostgreSQL (``faasload.embedded_pg``, durable as the loader's), a fresh database per measurement
with the loader's schema, ``--completions`` runs first written ``sent`` with one parameter (as the
loader writes them after the 202; not timed), a checkpoint, then each run's completion written by
the loader's :func:`loader.storage.writer.write_batch` in batches of ``--per-batch`` completions
(a batch of the store writer at 5,000 completions/s holds ~250): its update (the record's fields
and the monitor's status, as :meth:`loader.storage.recorder.Recorder.completed` makes it) and
``--samples`` samples (3 by default: a 30 ms activation sampled every 10 ms; 100 for a 1 s one).
Measured: the server process's CPU (``/proc``, its backend), this process's CPU (composing the
statement), the wall time, per completion; the share of updates PostgreSQL made in place (HOT: no
new index entry); the pages of ``runs``; the disk taken by the samples (``run_samples``, its
index and its TOAST), per sample.

Two layouts of ``runs``, alternated in each round: the schema's (``fillfactor`` 50, migration 8)
and PostgreSQL's default (100).  The physical reference, measured in the same run on the same
server: plain INSERTs of completed ``runs`` rows in transactions of 500 (rows/s), so the wall time
per completion is also printed as a multiple of one such row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

_common.use_repo_imports()
from _completion_monitor import insert_reference  # noqa: E402

LAYOUTS = {"schema (fillfactor 50)": None, "PostgreSQL's default (fillfactor 100)": 100}


def backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server, database: str, fillfactor: int | None, completions: int, per_batch: int,
            samples_per_completion: int) -> dict:

    from loader.storage import experiments
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
    from loader.storage.writer import write_batch

    base = DatabaseConfiguration(user=server.user, host=server.host, port=server.port, database="postgres")
    create_database(base, database)
    conn = experiments.open_store(DatabaseConfiguration(user=server.user, host=server.host, port=server.port,
                                                        database=database))
    if fillfactor is not None:
        with conn, conn.cursor() as cur:
            cur.execute(f"ALTER TABLE runs SET (fillfactor = {int(fillfactor)})")
    experiment_id = experiments.create_experiment(conn, name="store-writes", mode="injection")
    keys = [RunKey(experiment_id, f"user{n % 20}-action{n % 100 // 20}", n // 100) for n in range(completions)]
    for first in range(0, completions, per_batch):
        items: list = []
        for key in keys[first:first + per_batch]:
            items.append(RunUpdate(key, "user", "action", key.seq * 1000, RunStatus.SENT, sent_offset_us=key.seq * 1000,
                                   lateness_us=120, invoke_http_status=202, invoke_attempts=1,
                                   activation_id=uuid.uuid4().hex))
            items.append(RunParameters(key, (("object", "image-1.jpg"),)))
        write_batch(conn, items)
    with conn, conn.cursor() as cur:
        cur.execute("CHECKPOINT")
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    began_s, began_cpu_s, began_backend_s = time.perf_counter(), time.thread_time(), backend_cpu_s(pid)
    for first in range(0, completions, per_batch):
        items = []
        for n, key in enumerate(keys[first:first + per_batch]):
            start_ms = 1_700_000_000_000 + first + n
            items.append(RunUpdate(key, "user", "action", key.seq * 1000, RunStatus.SUCCESS, start_ms=start_ms,
                                   end_ms=start_ms + 10, duration_ms=10, wait_time_ms=3, init_time_ms=5,
                                   cold_start=False, kind="python:3", memory_limit_mb=256, response_size_bytes=120,
                                   output_size_bytes=1024, extract_ms=1.5, resources_status="ok", invoker="invoker0",
                                   kernel_peak_memory_bytes=31_457_280, kernel_peak_source="activation"))
            items.append(RunResources(key, ResourceSamples.of(
                ResourceSample(start_ms * 1000 + 10_000 * s, 31_000_000 + s, 4_000_000 * s, 30_000_000)
                for s in range(samples_per_completion))))
        write_batch(conn, items)
    wall_s, cpu_s = time.perf_counter() - began_s, time.thread_time() - began_cpu_s
    backend_s = backend_cpu_s(pid) - began_backend_s
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(0.6)  # the statistics are shared asynchronously
    with conn, conn.cursor() as cur:
        cur.execute("SELECT n_tup_upd, n_tup_hot_upd, pg_relation_size('runs') / 8192 FROM pg_stat_user_tables "
                    "WHERE relname = 'runs'")
        updates, hot, pages = cur.fetchone()
        cur.execute("SELECT count(*), pg_total_relation_size('run_samples') FROM resources")
        samples, samples_bytes = cur.fetchone()
    conn.close()
    if samples != completions * samples_per_completion:
        raise RuntimeError(f"{samples} samples stored for {completions} completions")
    per = 1e6 / completions
    return {"postgres_cpu_us": round(backend_s * per, 1), "writer_cpu_us": round(cpu_s * per, 1),
            "wall_us": round(wall_s * per, 1), "hot_share": round(hot / max(1, updates), 3), "runs_pages": pages,
            "bytes_per_sample": round(samples_bytes / max(1, samples), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-batch", type=int, default=250, help="completions per write_batch")
    parser.add_argument("--samples", type=int, default=3, help="monitor samples per completion")
    args = parser.parse_args(argv)
    from faasload import embedded_pg
    from loader.storage import experiments
    from loader.storage.database import DatabaseConfiguration, create_database

    scratch = Path(tempfile.mkdtemp(prefix="faasload-bench-store-", dir="/tmp"))
    scratch.chmod(0o755)   # the embedded server runs as postgres when this runs as root
    server = None
    figures: dict = {"completions": args.completions, "per_batch": args.per_batch, "samples": args.samples,
                     "layouts": {}}
    try:
        server = embedded_pg.start_cluster(scratch / "pgdata")
        create_database(DatabaseConfiguration(user=server.user, host=server.host, port=server.port,
                                              database="postgres"), "reference")
        reference_db = DatabaseConfiguration(user=server.user, host=server.host, port=server.port,
                                             database="reference")
        conn = experiments.open_store(reference_db)
        experiment_id = experiments.create_experiment(conn, name="reference", mode="injection")
        conn.close()
        reference = insert_reference(reference_db, experiment_id, args.completions, commits=20)
        row_us = 1e6 / reference["rows_per_s"]
        figures["reference"] = reference
        print(f"reference: plain INSERTs of completed runs rows {reference['rows_per_s']} rows/s "
              f"({row_us:.1f} µs per row) in transactions of 500")
        for round_ in range(args.rounds):
            for name, fillfactor in LAYOUTS.items():
                f = measure(server, f"round{round_}_{fillfactor or 'schema'}", fillfactor, args.completions,
                            args.per_batch, args.samples)
                figures["layouts"].setdefault(name, []).append(f)
                print(f"round {round_ + 1}, runs {name}: per completion PostgreSQL {f['postgres_cpu_us']} µs of CPU, "
                      f"writer {f['writer_cpu_us']} µs, wall {f['wall_us']} µs = {f['wall_us'] / row_us:.2f} × "
                      f"one raw INSERT; {100 * f['hot_share']:.0f}% of updates in place; runs {f['runs_pages']} pages; "
                      f"samples {f['bytes_per_sample']} bytes each on disk",
                      flush=True)
        for name, runs in figures["layouts"].items():
            print(f"median, runs {name}: PostgreSQL {statistics.median(r['postgres_cpu_us'] for r in runs)} µs, "
                  f"writer {statistics.median(r['writer_cpu_us'] for r in runs)} µs, "
                  f"wall {statistics.median(r['wall_us'] for r in runs)} µs per completion")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"results: {_common.write_results('store_writes', figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
