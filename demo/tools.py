"""Small helpers of ``scripts/demo.sh``: readiness waits, and the dataset queries it shows.

``python -m demo.tools free-port`` | ``wait-file PATH SECONDS [PID]`` | ``wait-http URL SECONDS [PID]`` |
``wait-socket PATH SECONDS [PID]`` | ``queries LOADER_CONFIG`` | ``check-success LOADER_CONFIG`` |
``state-dir DEFAULT``

``queries`` runs the example queries with psql on the database of a loader configuration
(``python -m loader.psql`` opens it interactively); ``check-success`` exits 0 only when the
newest experiment planned invocations and every one has a ``runs`` row with status
``success``; ``state-dir`` prints DEFAULT, or as root
``/var/lib/faasload/demo`` when the embedded PostgreSQL's user could not reach DEFAULT.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import requests

from faasload import embedded_pg
from faasload.procs import free_tcp_port
from loader import config as loader_config
from loader.psql import run_psql
from loader.storage.database import open_database

#: What the demo shows of the dataset (docs/dataset.md has more).
QUERIES = [
    ("experiments (newest first)",
     "SELECT experiment_id AS id, name, summary->'statuses' AS statuses FROM experiments ORDER BY 1 DESC LIMIT 5"),
    ("per function in the last experiment: runs, mean duration and wait, cold-start share, peak memory",
     """SELECT r.action_name, count(*) AS runs, round(avg(r.duration_ms), 1) AS mean_duration_ms,
               round(avg(r.wait_time_ms), 1) AS mean_wait_ms, round(avg(r.cold_start::int), 2) AS cold_share,
               round(max(s.peak_bytes) / 1048576.0, 1) AS peak_mib
        FROM runs r LEFT JOIN (SELECT run_id, max(memory_bytes) AS peak_bytes FROM resources GROUP BY run_id) s
             USING (run_id)
        WHERE r.experiment_id = (SELECT max(experiment_id) FROM experiments)
        GROUP BY r.action_name ORDER BY r.action_name"""),
    ("lateness of the last experiment (µs)",
     """SELECT count(*) AS sent, percentile_disc(0.5) WITHIN GROUP (ORDER BY lateness_us) AS p50_us,
               percentile_disc(0.99) WITHIN GROUP (ORDER BY lateness_us) AS p99_us, max(lateness_us) AS max_us
        FROM runs WHERE experiment_id = (SELECT max(experiment_id) FROM experiments) AND lateness_us IS NOT NULL"""),
    ("three runs with their parameters",
     """SELECT r.trace_name, r.seq, r.status, r.duration_ms, r.output_size_bytes,
               string_agg(p.name || '=' || p.value, ' ' ORDER BY p.name) AS parameters
        FROM runs r JOIN parameters p USING (run_id)
        WHERE r.experiment_id = (SELECT max(experiment_id) FROM experiments)
        GROUP BY r.run_id ORDER BY r.planned_offset_us LIMIT 3"""),
]


def _wait(ready, seconds: float, pid: int | None, what: str) -> int:
    deadline = time.monotonic() + seconds
    while not ready():
        if pid is not None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print(f"{what}: the process {pid} exited", file=sys.stderr)
                return 1
        if time.monotonic() > deadline:
            print(f"{what} not ready after {seconds:.0f} s", file=sys.stderr)
            return 1
        time.sleep(0.05)
    return 0


def _http_ready(url: str) -> bool:
    try:
        requests.get(url, timeout=1.0)
        return True
    except requests.RequestException:
        return False


def _socket_ready(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(path)
            return True
        except OSError:
            return False


def queries(loader_config_path: str) -> int:
    args = ["-X", "-P", "footer=off"]
    for title, sql in QUERIES:
        args += ["-c", f"\\echo '-- {title}'", "-c", " ".join(sql.split())]
    config = loader_config.load(loader_config_path)
    return run_psql(config.database, args)


def check_success(loader_config_path: str) -> int:
    """0 when every planned invocation of the newest experiment succeeded, else 1 with the counts."""
    opened = open_database(loader_config.load(loader_config_path).database)
    try:
        conn = opened.config.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT experiment_id, summary->'planned' FROM experiments ORDER BY experiment_id DESC LIMIT 1")
                row = cur.fetchone()
                if row is None:
                    print("no experiment in the dataset", file=sys.stderr)
                    return 1
                experiment, planned = row
                cur.execute("SELECT status, count(*) FROM runs WHERE experiment_id = %s GROUP BY status ORDER BY status",
                            (experiment,))
                statuses = dict(cur.fetchall())
        finally:
            conn.close()
    finally:
        opened.close()
    shown = ", ".join(f"{status} {count}" for status, count in statuses.items()) or "no runs"
    if planned and statuses == {"success": planned}:
        print(f"experiment {experiment}: all {planned} planned invocations succeeded")
        return 0
    print(f"experiment {experiment}: {planned} planned, runs: {shown}: not every invocation succeeded", file=sys.stderr)
    return 1


def state_dir(default: str) -> Path:
    path = Path(default).resolve()
    return path if embedded_pg.service_user_reaches(path) else embedded_pg.SHARED_INSTALL_DIR / "demo"


def main(argv: list[str]) -> int:
    command, *rest = argv
    pid = int(rest[2]) if len(rest) > 2 else None
    if command == "free-port":
        print(free_tcp_port())
        return 0
    if command == "wait-file":
        return _wait(lambda: Path(rest[0]).exists(), float(rest[1]), pid, rest[0])
    if command == "wait-http":
        return _wait(lambda: _http_ready(rest[0]), float(rest[1]), pid, rest[0])
    if command == "wait-socket":
        return _wait(lambda: _socket_ready(rest[0]), float(rest[1]), pid, rest[0])
    if command == "queries":
        return queries(rest[0])
    if command == "check-success":
        return check_success(rest[0])
    if command == "state-dir":
        print(state_dir(rest[0]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
