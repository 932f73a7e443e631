"""What bench/completion_pipeline.py needs beyond the pipeline: a real monitor answering, and the
physical reference (raw INSERTs of the same rows into the same PostgreSQL).

:class:`MonitorSide` starts ``python -m monitor`` (``bench/monitor_cost.py``'s launcher: sockets in
a temporary directory, Docker discovery off, 10 ms sampling), creates a few real cgroups with a
sleeping process each (``monitor_cost.Containers``), announces them with their cgroup, waits until
each is sampled, then binds every activation of a run to one of them with ``activation_start`` /
``activation_end`` notices (as localwhisk's invoker sends them) dated just before its user event
is due: the monitor then answers each activation with the samples of its container, and waits
for the sample after its end as it would in a real run.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import _common
import monitor_cost

from monitor.config import SamplingConfig

_common.use_repo_imports()

#: Where an activation's window ends, before its user event is due (the invoker publishes the
#: event right after the activation ended); it starts ``activation_s`` earlier.
END_BEFORE_EVENT_S = 0.005
NOTICE_THREADS = 2


class MonitorSide:
    def __init__(self, scratch: Path, containers: int = 4, resolution_s: float = 0.01, activation_s: float = 0.01):
        #: How long each activation's window lasts (the samples of each row: ~activation_s / resolution_s + 2).
        self.activation_s = activation_s
        from loader.monitor_client import MonitorClient
        directory = scratch / f"monitor-{uuid.uuid4().hex[:6]}"
        directory.mkdir()
        self.cgroups = monitor_cost.Containers(containers, uuid.uuid4().hex[:6])
        self.process = None
        try:
            self.process, self.notif, self.meas = monitor_cost.start_monitor(directory, resolution_s, SamplingConfig().stat_every)
            self.names = [f"bench-{index}" for index in range(containers)]
            for name, path in zip(self.names, self.cgroups.paths):
                monitor_cost.send(self.notif, {"action": "run", "container": name, "cgroup": path})
            deadline = time.monotonic() + 20
            while not all(monitor_cost.query(self.meas, {"container": n, "start": 0, "end": time.time()})
                          for n in self.names):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the monitor does not sample the cgroups (log: {directory}/monitor.log)")
                time.sleep(0.05)
        except BaseException:
            self.close()
            raise
        self.client = MonitorClient(self.meas, timeout_s=2.0)  # the loader's default monitor:timeout_s
        self.notices_per_s = 0.0

    def bind(self, ids: list[str], rate: float, *, margin_s: float = 2.0) -> float:
        """Bind activation ``i`` to a container over a window just before ``start + i / rate`` and
        return ``start`` (epoch s), chosen so that every notice is sent before it."""
        probe = [uuid.uuid4().hex for _ in range(200)]
        began = time.monotonic()
        self._send_notices([(a, self.names[0], time.time() - 1.0, time.time() - 0.9) for a in probe])
        self.notices_per_s = 2 * len(probe) / (time.monotonic() - began)
        start = time.time() + 1.5 * 2 * len(ids) / self.notices_per_s + margin_s + self.activation_s
        bindings = [(a, self.names[i % len(self.names)], start + i / rate - END_BEFORE_EVENT_S - self.activation_s,
                     start + i / rate - END_BEFORE_EVENT_S) for i, a in enumerate(ids)]
        self._send_notices(bindings)
        return start

    def _send_notices(self, bindings: list[tuple[str, str, float, float]]) -> None:
        def send(part: list[tuple[str, str, float, float]]) -> None:
            for activation, container, start_s, end_s in part:
                for boundary, date_s in (("activation_start", start_s), ("activation_end", end_s)):
                    _send(self.notif, {"action": boundary, "container": container, "activation": activation,
                                         "date": date_s})

        threads = [threading.Thread(target=send, args=(bindings[n::NOTICE_THREADS],)) for n in range(NOTICE_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def query_cost(self, count: int = 1000, rate: float = 2000.0) -> dict:
        """Wall time per activation of the monitor's answers (client and monitor), one query per
        activation against batches of 50 and 200, for ``count`` activations bound and ended."""
        from faasload.monitor_protocol import ActivationQuery
        from loader.monitor_client import ResourcesQuery
        ids = [uuid.uuid4().hex for _ in range(3 * count)]
        start = self.bind(ids, rate, margin_s=0.5)
        time.sleep(max(0.0, start + len(ids) / rate + 0.1 - time.time()))  # every window ended
        figures, offset = {}, 0
        for size in (1, 50, 200):
            took_s = 0.0
            for first in range(offset, offset + count, size):
                queries = [ResourcesQuery(ActivationQuery(a)) for a in ids[first:min(first + size, offset + count)]]
                began = time.perf_counter()
                answers = self.client.samples_for_activations(queries)
                took_s += time.perf_counter() - began
                if any(a.status.value != "ok" for a in answers):
                    raise RuntimeError(f"the monitor did not answer every activation: {answers[0]}")
            figures[f"batch_{size}_us_per_activation"] = round(took_s / count * 1e6, 1)
            offset += count
        return figures

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            from faasload.procs import stop_process
            stop_process(self.process)
        self.cgroups.close()


def _send(path: Path, message: dict) -> None:
    """``monitor_cost.send``, again while the socket's backlog is full (EAGAIN): no notice lost."""
    for _ in range(10_000):
        try:
            monitor_cost.send(path, message)
            return
        except BlockingIOError:
            time.sleep(0.001)
    raise RuntimeError(f"the monitor's notification socket {path} stays full")


# --------------------------------------------------------------------------- the physical reference

def insert_reference(database, experiment_id: int, rows: int, *, batch: int = 500, commits: int = 200) -> dict:
    """Plain INSERTs of completed runs rows (the columns a completion fills) into ``runs``: rows per
    second in transactions of ``batch`` rows, and the time of one single-row INSERT + commit."""
    import psycopg2.extras

    from loader.storage import experiments
    conn = experiments.open_store(database)
    columns = ("experiment_id", "trace_name", "seq", "user_name", "action_name", "planned_offset_us", "status",
               "activation_id", "start_ms", "end_ms", "duration_ms", "wait_time_ms", "init_time_ms", "cold_start",
               "extract_ms", "output_size_bytes", "resources_status")
    sql = f"INSERT INTO runs ({', '.join(columns)}) VALUES %s"

    def row(n: int, trace: str) -> tuple:
        return (experiment_id, trace, n, "bench", "bench", n, "success", uuid.uuid4().hex, 1_700_000_000_000 + n,
                1_700_000_000_010 + n, 10, 3, 5, True, 1.5, 1024, "ok")

    try:
        began = time.monotonic()
        for first in range(0, rows, batch):
            with conn, conn.cursor() as cur:
                psycopg2.extras.execute_values(cur, sql, [row(n, "reference-bulk")
                                                          for n in range(first, min(rows, first + batch))],
                                               page_size=batch)
        bulk_s = time.monotonic() - began
        single_ms = []
        for n in range(commits):
            began = time.monotonic()
            with conn, conn.cursor() as cur:
                psycopg2.extras.execute_values(cur, sql, [row(n, "reference-single")])
            single_ms.append((time.monotonic() - began) * 1000)
    finally:
        conn.close()
    return {"rows": rows, "rows_per_s": round(rows / bulk_s, 1), "transaction_rows": batch,
            "single_insert_commit_ms": _common.spread(single_ms, digits=3)}
