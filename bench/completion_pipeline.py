"""Completion pipeline throughput: Kafka user events → completed rows in PostgreSQL, with and without a monitor.

    python bench/completion_pipeline.py [--rates 5000,10000] [--duration-s 20] [--monitor both|on|off]
                                        [--activation-ms 10]

Starts a Tansu broker (``faasload.tansu``), an embedded PostgreSQL (``faasload.embedded_pg``, data
directory in /tmp, durable as the loader's embedded server) and nginx answering activation records
(``bench/_nginx.py``: a fixed complete record for any id, so the endpoint is not what is measured).
In this process, the loader's real completion path, wired as :class:`loader.pipeline.Pipeline` wires
it: :class:`loader.completion.user_events.EventConsumer` → :class:`loader.completion.tracker.CompletionTracker` (its fetch
pool and :class:`loader.platform.client.OpenWhiskClient`) → :class:`loader.storage.recorder.Recorder` →
:class:`loader.completion.resource_batches.ResourceBatches` (the monitor asked in batches, loader defaults) →
:class:`loader.storage.recorder.DurableSink` → :class:`loader.storage.writer_process.WriterProcess` (a :class:`loader.storage.writer.StoreWriter` in a process of its own; loader defaults: batches
of 500, flush interval 20 ms, ``completion:fetches_in_flight`` at its default unless
``--fetches-in-flight``).  The GIL switch interval is the pipeline's while it runs
(``loader.pipeline.switch_interval_s``: Python's own with sender processes, the default), and the
garbage collector is tuned as it tunes it.

With ``--monitor on`` (or ``both``: each rate without, then with) a real monitor answers
(``bench/_completion_monitor.py``): ``python -m monitor`` sampling 4 real cgroups at 10 ms, every
activation bound to one of them by start/end notices dated just before its event, over a window
of ``--activation-ms`` (10 ms: ~3 samples per row; 1000 ms, a 1 s activation: ~102); each row
then holds the samples of its window, and the run checks that every row has resources ``ok``.

For each rate: ``rate × duration`` activations are first recorded ``sent`` and registered with the
tracker (as the invoker pool does after a 202; not timed), then a producer **process** publishes
one ``Activation`` user event per activation (OpenWhisk's EventMessage shape) at that rate, on
absolute deadlines, and notes when it sent each.  The run's ``on_stored`` callback (fired by a
loop every ``--fire-interval-ms``, as the pipeline's main loop does every 50 ms) gives the commit
time of each completed row; the consumer's callback and the tracker's completion callback are
wrapped to time-stamp the stages (event consumed, record fetched).  Prints completions/s while events flow and overall, event-to-row
latency percentiles and per stage, the CPU of this process, of the broker and of nginx, and checks that every
activation ended in exactly one ``success`` row holding the record's fields.  Goal: ≥ 5,000
completions/s sustained: a run sustains its offered rate when every activation ends in a correct
row committed within ``KEEP_UP_S`` of the last event; the most completions/s overall in any run
(saturated at the highest rate) is the pipeline's capacity.  Goals (issue 17): p99 event-to-row
≤ 100 ms at 5,000/s with the monitor on, capacity ≥ 10,000/s.  The physical reference, measured in
the same run: plain INSERTs of as many completed rows into the same PostgreSQL (rows/s in
transactions of 500, and one single-row INSERT + commit); the figures are printed as ratios to it.

What-if knobs: ``--fetches-in-flight``, ``--batch-size``, ``--flush-interval-ms``,
``--fetch-wait-ms``.  The topic is created with kafka-python's admin client (a dev package).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

_common.use_repo_imports()
from _completion_monitor import MonitorSide, insert_reference  # noqa: E402

TOPIC = "events"
FAKE_KEY = "00000000-0000-0000-0000-000000000000:benchkey"
GOAL_PER_S = 5000
GOAL_P99_MS = 100.0
GOAL_CAPACITY_PER_S = 10_000
#: A run kept up with its offered rate when its last row was committed within this of the last event.
KEEP_UP_S = 1.0
#: The start-up the run's figures are also given without: connections opened, the consumer's first
#: fetches, the processes' first answers (the goal is judged on the whole run).
START_S = 2.0


# --------------------------------------------------------------------------- the producer process

#: The producer's linger (see :func:`producer`).
LINGER_MS = 5


def event_message(activation_id: str) -> bytes:
    """An OpenWhisk ``Activation`` user event (EventMessage shape, as OpenWhisk's invoker sends)."""
    return json.dumps({
        "body": {"statusCode": 0, "duration": 10, "name": "bench/bench", "waitTime": 3, "initTime": 5,
                 "kind": "python:3.11", "conductor": False, "memory": 256, "causedBy": None, "size": 86,
                 "activationId": activation_id},
        "eventType": "Activation", "source": "invoker0", "subject": "bench", "timestamp": int(time.time() * 1000),
        "userId": "00000000-0000-0000-0000-000000000000", "namespace": "bench"}).encode()


def producer(bootstrap: str, ids_path: Path, rate: float, out_path: Path, start_epoch_s: float) -> None:
    """Event ``i`` at ``start_epoch_s + i / rate`` (or at once, if the setup made it late).

    librdkafka's producer (confluent-kafka): the stand-in for OpenWhisk's invokers, which run on
    other machines, costs this one a fifth of a core less at 5,000/s than kafka-python's.  It
    lingers 5 ms, Apache Kafka's producer default since 4.0 (1 ms: one produce request per
    millisecond at 5,000/s, a third of a core of the broker on this machine)."""
    from confluent_kafka import Producer
    ids = json.loads(ids_path.read_text())
    kafka = Producer({"bootstrap.servers": bootstrap, "linger.ms": LINGER_MS, "acks": 1, "log_level": 4})
    sent_s = [0.0] * len(ids)
    start = time.monotonic() + max(0.0, start_epoch_s - time.time())
    for index, activation_id in enumerate(ids):
        due = start + index / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        sent_s[index] = time.time()
        kafka.produce(TOPIC, event_message(activation_id))
        kafka.poll(0)
    if kafka.flush(30):
        raise RuntimeError("the producer could not deliver every event within 30 s")
    produce_s = time.monotonic() - start
    out_path.write_text(json.dumps({"sent_epoch_s": sent_s, "produce_s": produce_s}))


# --------------------------------------------------------------------------- the measured pipeline

class Services:
    """Broker, PostgreSQL and nginx, started here and stopped by pid."""

    def __init__(self, scratch: Path):
        import _nginx

        from faasload import embedded_pg, tansu
        from loader.storage.database import DatabaseConfiguration, create_database
        self.broker = tansu.start(scratch / "tansu")
        pgdir = scratch / "pgdata"
        self.pg = embedded_pg.start_cluster(pgdir)
        create_database(DatabaseConfiguration(user=self.pg.user, host=self.pg.host, port=self.pg.port,
                                              database="postgres"), "bench")
        self.database = DatabaseConfiguration(user=self.pg.user, host=self.pg.host, port=self.pg.port,
                                              database="bench")
        self.nginx = _nginx.start()

    def stop(self) -> None:
        for stop in (self.nginx.stop, self.broker.stop, lambda: self.pg.stop(mode="fast")):
            try:
                stop()
            except Exception as exc:  # keep stopping the others  # noqa: BLE001
                print(f"stopping a service failed: {exc}", file=sys.stderr)


class AnswerTimes:
    """The monitor client, noting when each activation's answer came (the stage's query threads)."""

    def __init__(self, client, answered_s: dict[str, float]):
        self.client, self.answered_s = client, answered_s

    def samples_for_activations(self, queries):
        answers = self.client.samples_for_activations(queries)
        now = time.time()
        for query in queries:
            self.answered_s[query.query.activation] = now
        return answers


def create_topic(bootstrap: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        admin.create_topics([NewTopic(TOPIC, num_partitions=4, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def measure(services: Services, scratch: Path, rate: float, duration_s: float, fetches_in_flight: int,
            fetch_wait_ms: int, batch_size: int, flush_interval_s: float, fire_interval_s: float,
            monitor: MonitorSide | None) -> dict:
    from faasload.clock import RealClock
    from loader.completion.resource_batches import BatchSettings, ResourceBatches
    from loader.completion.tracker import CompletionTracker, TrackerSettings
    from loader.completion.user_events import EventConsumer
    from loader.config import CompletionConfig
    from loader.plan import PlannedInvocation
    from loader.platform.client import InvokeOutcome, InvokeStatus, OpenWhiskClient
    from loader.platform.keys import parse_key
    from loader.storage import experiments
    from loader.storage.recorder import DurableSink, Recorder
    from loader.storage.summary import RunStats
    from loader.storage.writer_process import WriterProcess

    count = int(rate * duration_s)
    conn = experiments.open_store(services.database)
    experiment_id = experiments.ensure_experiment(conn, name=f"bench-completions-{rate:g}-{uuid.uuid4().hex[:6]}",
                                            mode="injection")
    writer = WriterProcess(services.database, batch_size=batch_size,      # as loader.experiment runs
                           flush_interval_s=flush_interval_s).start()  # the pipeline's writer
    stats = RunStats(10_000, count)
    stored_s: dict[str, float] = {}
    consumed_s: dict[str, float] = {}
    fetched_s: dict[str, float] = {}
    answered_s: dict[str, float] = {}

    def on_stored(invocation, status) -> None:
        stored_s[invocation.trace_name] = time.time()

    sink = DurableSink(writer)
    recorder = Recorder(sink, experiment_id, stats, on_stored=on_stored)
    clock = RealClock(spin_s=0.0)  # the pipeline's with sender processes (the default): no spin before deadlines
    defaults = CompletionConfig()
    batches = ResourceBatches(recorder, None if monitor is None else AnswerTimes(monitor.client, answered_s),
                              BatchSettings(defaults.resources_batch_max, defaults.resources_batch_wait_s,
                                            defaults.resources_wait_s, defaults.resources_wait_max_s,
                                            defaults.resources_reask_unknown_s), clock=clock)
    client = OpenWhiskClient(services.nginx.apihost, timeout_s=10.0)
    settings = TrackerSettings(event_timeout_s=3600.0, poll_interval_s=2.0, record_retry_s=0.05,
                               final_deadline_s=7200.0, fetches_in_flight=fetches_in_flight)
    def complete(pending, record, reason) -> None:  # Pipeline._complete, plus a time stamp
        fetched_s[pending.activation_id] = time.time()
        batches.submit(pending, record, reason)

    tracker = CompletionTracker(client, settings, complete, clock=clock)

    def on_events(events) -> None:  # the tracker's on_events, plus a time stamp
        now_s = time.time()
        for event in events:
            consumed_s.setdefault(event.activation_id, now_s)
        tracker.on_events(events)

    user = parse_key(FAKE_KEY, "bench", "bench")
    ids = [uuid.uuid4().hex for _ in range(count)]
    setup_start = time.monotonic()
    for seq, activation_id in enumerate(ids):
        invocation = PlannedInvocation(activation_id, 0, "bench", "bench", seq, "1.jpg",
                                       (("incont", "in"), ("object", "1.jpg"), ("outcont", "out")))
        recorder.dispatched()
        recorder.sent(invocation, seq, InvokeOutcome(InvokeStatus.ACCEPTED, 1, activation_id, 202))
        tracker.register(invocation, recorder.key(invocation), user, activation_id, clock.monotonic_s())
    writer.flush()
    start_epoch_s = monitor.bind(ids, rate) if monitor is not None else time.time() + 1.0
    setup_s = time.monotonic() - setup_start
    halt = threading.Event()
    consumer = EventConsumer([services.broker.bootstrap], TOPIC, on_events, fetch_wait_ms=fetch_wait_ms).start()
    if not consumer.wait_ready(30):
        raise RuntimeError(f"user-event consumer not ready: {consumer.stats.last_error}")
    tracker_thread = threading.Thread(target=tracker.run, args=(halt,), name="completion-tracker", daemon=True)
    tracker_thread.start()
    batches_thread = threading.Thread(target=batches.run, args=(halt,), name="resource-batches", daemon=True)
    batches_thread.start()
    ids_path, out_path = scratch / f"ids-{rate:g}.json", scratch / f"sent-{rate:g}.json"
    ids_path.write_text(json.dumps(ids))
    broker_cpu0, nginx_cpu0 = _common.cpu_times(services.broker.process.pid), \
        [_common.cpu_times(p) for p in services.nginx.pids]
    cpu0 = _common.cpu_times()
    fetcher_pid = getattr(tracker.fetcher, "process_id", None)
    fetcher_cpu0 = _common.cpu_times(fetcher_pid) if fetcher_pid else None
    writer_pid = writer.process_id
    writer_cpu0 = _common.cpu_times(writer_pid) if writer_pid else None
    postgres_cpu0 = postgres_cpu(services)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    monitor_cpu0 = _common.cpu_times(monitor.process.pid) if monitor is not None else None
    produce = subprocess.Popen([sys.executable, __file__, "--producer", services.broker.bootstrap, "--ids",
                                str(ids_path), "--rate", str(rate), "--out", str(out_path),
                                "--start-epoch", repr(start_epoch_s)])
    deadline = time.monotonic() + duration_s * 3 + 60
    while len(stored_s) < count and time.monotonic() < deadline:
        sink.fire()
        time.sleep(fire_interval_s)
    sink.fire()
    cpu1 = _common.cpu_times()
    fetcher_cpu = (_common.cpu_share(fetcher_cpu0, _common.cpu_times(fetcher_pid))
                   if fetcher_pid and fetcher_cpu0 is not None else None)
    writer_cpu = (_common.cpu_share(writer_cpu0, _common.cpu_times(writer_pid))
                  if writer_pid and writer_cpu0 is not None else None)
    postgres_cpu1 = postgres_cpu(services)
    monitor_cpu = (_common.cpu_share(monitor_cpu0, _common.cpu_times(monitor.process.pid))
                   if monitor is not None and monitor_cpu0 is not None else None)
    broker_cpu1, nginx_cpu1 = _common.cpu_times(services.broker.process.pid), \
        [_common.cpu_times(p) for p in services.nginx.pids]
    produce.wait(duration_s * 3 + 60)
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    producer_cpu_s = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    halt.set()
    tracker_thread.join(10)
    batches_thread.join(10)
    consumer.stop()
    tracker.close()
    fetch_stats = tracker.fetcher_stats
    batches.close()
    writer.close()
    produced = json.loads(out_path.read_text())
    sent = dict(zip(ids, produced["sent_epoch_s"]))
    latencies = [stored_s[a] - sent[a] for a in ids if a in stored_s]
    kafka_ms = [consumed_s[a] - sent[a] for a in ids if a in consumed_s]
    fetch_ms = [fetched_s[a] - consumed_s[a] for a in ids if a in fetched_s and a in consumed_s]
    answer_ms = [answered_s[a] - fetched_s[a] for a in ids if a in answered_s and a in fetched_s]
    store_ms = [stored_s[a] - fetched_s[a] for a in ids if a in stored_s and a in fetched_s]
    first_sent, last_sent = min(sent.values()), max(sent.values())
    per_second: dict[int, list[float]] = {}
    for a in ids:
        if a in stored_s:
            per_second.setdefault(int(sent[a] - first_sent), []).append(stored_s[a] - sent[a])
    second_p99_ms = {second: _common.spread(values, scale=1000, digits=1)["p99"]
                     for second, values in sorted(per_second.items()) if len(values) >= 100}
    after_start = [stored_s[a] - sent[a] for a in ids if a in stored_s and sent[a] - first_sent >= START_S]
    during = sum(1 for t in stored_s.values() if t <= last_sent)
    last_row = max(stored_s.values()) if stored_s else first_sent
    check = verify(conn, experiment_id, count, monitor is not None)
    conn.close()
    figures = {
        "monitor": monitor is not None, "target_rate_per_s": rate, "activations": count,
        "activation_ms": round(monitor.activation_s * 1000, 3) if monitor is not None else None,
        "setup_s": round(setup_s, 1),
        "late_start_s": round(max(0.0, min(produced["sent_epoch_s"]) - start_epoch_s), 3),
        "produced_rate_per_s": round(count / produced["produce_s"], 1),
        "completed": len(stored_s), "events_matched": tracker.events_matched, "lost": tracker.lost,
        "consumer": {"messages": consumer.stats.messages, "errors": consumer.stats.errors},
        "completions_per_s_while_producing": round(during / (last_sent - first_sent), 1) if last_sent > first_sent else None,
        "completions_per_s_overall": round(len(stored_s) / (last_row - first_sent), 1) if last_row > first_sent else None,
        "drain_after_last_event_s": round(last_row - last_sent, 3),
        "event_to_row_ms": _common.spread(latencies, scale=1000, digits=1),
        "event_to_row_ms_after_start": _common.spread(after_start, scale=1000, digits=1),
        "event_to_row_p99_ms_per_second": second_p99_ms,
        "stages_ms": {"produce_to_consumed": _common.spread(kafka_ms, scale=1000, digits=1),
                      "consumed_to_record_fetched": _common.spread(fetch_ms, scale=1000, digits=1),
                      "fetched_to_monitor_answered": _common.spread(answer_ms, scale=1000, digits=1),
                      "fetched_to_row_committed": _common.spread(store_ms, scale=1000, digits=1)},
        "pipeline_cpu": _common.cpu_share(cpu0, cpu1), "fetch_process_cpu": fetcher_cpu,
        "writer_process_cpu": writer_cpu,
        "broker_cpu": _common.cpu_share(broker_cpu0, broker_cpu1),
        "postgres_cpu": _common.cpu_share(postgres_cpu0, postgres_cpu1),
        "producer_cpu_s": round(producer_cpu_s, 2),
        "monitor_cpu": monitor_cpu, "monitor_batches": batches.batches, "late_answers": batches.late_answers,
        "nginx_cpu_pct_of_one_core": round(100 * sum(b.total_s - a.total_s for a, b in zip(nginx_cpu0, nginx_cpu1))
                                           / (cpu1.wall_s - cpu0.wall_s), 1),
        "writer": {"batches": writer.stats.batches_written, "items": writer.stats.items_written,
                   "busy_s": round(writer.stats.busy_s, 2), "cpu_s": round(writer.stats.cpu_s, 2)},
        "fetches_in_flight": fetches_in_flight, "fetch_wait_ms": fetch_wait_ms, "fetch_peak_in_flight": fetch_stats.get("peak_in_flight"),
        "fetch_connections_opened": fetch_stats.get("connections_opened"), "store_batch_size": writer.batch_size,
        "store_flush_interval_s": writer.flush_interval_s, "rows_check": check,
    }
    figures["cpu_per_completion_us"] = cpu_budget(figures, sum(b.total_s - a.total_s
                                                               for a, b in zip(nginx_cpu0, nginx_cpu1)))
    return figures


def cpu_budget(f: dict, nginx_s: float) -> dict:
    """CPU µs per completion of every process of the run (the broker, nginx and the producer stand
    in for the platform), and the completions/s this machine's cores hold at that cost: the
    physical ceiling of the run, whatever the latency."""
    def used(share: dict | None) -> float:
        return share["user_s"] + share["sys_s"] if share else 0.0
    seconds = {"pipeline": used(f["pipeline_cpu"]), "record_fetches": used(f["fetch_process_cpu"]),
               "writer": used(f["writer_process_cpu"]), "postgresql": used(f["postgres_cpu"]),
               "monitor": used(f["monitor_cpu"]), "broker": used(f["broker_cpu"]), "nginx": nginx_s,
               "producer": f["producer_cpu_s"]}
    completed = max(1, f["completed"])
    per = {name: round(s / completed * 1e6, 1) for name, s in seconds.items()}
    per["loader"] = round(per["pipeline"] + per["record_fetches"] + per["writer"], 1)
    per["all"] = round(sum(seconds.values()) / completed * 1e6, 1)
    cores = len(os.sched_getaffinity(0))   # the cores this run may use
    per["cores"] = cores
    per["ceiling_per_s"] = round(cores * 1e6 / per["all"]) if per["all"] else None
    return per


def postgres_cpu(services: Services) -> _common.CpuTimes:
    """The CPU of the PostgreSQL server: its postmaster and every process it started (backends, writers)."""
    postmaster = int((services.pg.datadir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        if int(text[text.rindex(")") + 2:].split()[1]) == postmaster:
            pids.append(int(stat.parent.name))
    readings = []
    for pid in pids:
        try:
            readings.append(_common.cpu_times(pid))
        except OSError:
            continue
    return _common.total(readings)


def verify(conn, experiment_id: int, count: int, with_monitor: bool) -> dict:
    """Every activation in exactly one success row carrying the record's fields (and, with the
    monitor, resources ``ok`` with samples)."""
    with conn.cursor() as cur:
        cur.execute("SELECT status, count(*), count(DISTINCT activation_id), "
                    "sum(CASE WHEN duration_ms = 10 AND cold_start AND init_time_ms = 5 AND wait_time_ms = 3 "
                    "AND extract_ms = 1.5 AND output_size_bytes = 1024 THEN 1 ELSE 0 END) "
                    "FROM runs WHERE experiment_id = %s GROUP BY status", (experiment_id,))
        rows = {status: (n, distinct, good) for status, n, distinct, good in cur.fetchall()}
        cur.execute("SELECT coalesce(resources_status, 'null'), count(*), "
                    "sum((SELECT count(*) FROM resources s WHERE s.run_id = r.run_id)) "
                    "FROM runs r WHERE experiment_id = %s GROUP BY 1", (experiment_id,))
        resources = {status: (n, int(samples or 0)) for status, n, samples in cur.fetchall()}
    conn.commit()
    success = rows.get("success", (0, 0, 0))
    expected = {"ok": count} if with_monitor else {"null": count}
    return {"statuses": {s: v[0] for s, v in rows.items()},
            "resources": {s: v[0] for s, v in resources.items()},
            "samples_per_run": round(sum(v[1] for v in resources.values()) / count, 2) if count else None,
            "ok": success[0] == count == success[1] == success[2] and len(rows) == 1
            and {s: v[0] for s, v in resources.items()} == expected
            and (not with_monitor or all(v[1] >= v[0] for v in resources.values()))}


def show(f: dict) -> None:
    lat, cpu = f["event_to_row_ms"], f["pipeline_cpu"]
    monitor = f"ON (real, 4 cgroups at 10 ms; activations of {f['activation_ms']:g} ms)" if f["monitor"] else "off"
    print(f"{f['target_rate_per_s']:g} events/s × {f['activations']} activations, monitor {monitor} "
          f"(produced at {f['produced_rate_per_s']}/s; "
          f"setup {f['setup_s']} s not timed{'; started ' + str(f['late_start_s']) + ' s late' if f['late_start_s'] else ''})")
    print(f"  completed {f['completed']} (matched {f['events_matched']}, lost {f['lost']}); "
          f"{f['completions_per_s_while_producing']} completions/s while events flowed, "
          f"{f['completions_per_s_overall']}/s overall, drained {f['drain_after_last_event_s']} s after the last event")
    print(f"  event-to-row p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
    after, seconds = f["event_to_row_ms_after_start"], f["event_to_row_p99_ms_per_second"]
    if after["count"] and seconds:
        worst = max(seconds, key=lambda second: seconds[second])
        print(f"    after the first {START_S:g} s of events: p50 {after['p50']} ms, p99 {after['p99']} ms; p99 per "
              f"second of events: median {sorted(seconds.values())[len(seconds) // 2]} ms, worst {seconds[worst]} ms "
              f"(second {worst})")
    for stage, spread in f["stages_ms"].items():
        if spread["count"]:
            print(f"    {stage.replace('_', ' ')}: p50 {spread['p50']} ms, p99 {spread['p99']} ms, max {spread['max']} ms")
    monitor = ""
    if f["monitor_cpu"] is not None:
        monitor = (f", monitor {f['monitor_cpu']['pct_of_one_core']}% ({f['monitor_batches']} batch queries, "
                   f"{f['late_answers']} answers later than completion:resources_wait_s)")
    fetch_cpu = f"; the fetch process {f['fetch_process_cpu']['pct_of_one_core']}% of one core" \
        if f["fetch_process_cpu"] else ""
    w = f["writer"]
    print(f"  store writer: {w['items']} items in {w['batches']} transactions "
          f"({w['items'] / max(1, w['batches']):.0f} per transaction), busy {w['busy_s']} s "
          f"(its own CPU {w['cpu_s']} s, setup included)"
          + (f"; the writer process {f['writer_process_cpu']['pct_of_one_core']}% of one core"
             if f["writer_process_cpu"] else ""))
    print(f"  record fetches: at most {f['fetches_in_flight']} in flight, peak {f['fetch_peak_in_flight']}, "
          f"{f['fetch_connections_opened']} connections opened{fetch_cpu}")
    print(f"  pipeline process {cpu['pct_of_one_core']}% of one core ({cpu['user_s']} s user + {cpu['sys_s']} s sys), "
          f"broker {f['broker_cpu']['pct_of_one_core']}%, PostgreSQL {f['postgres_cpu']['pct_of_one_core']}%, "
          f"nginx {f['nginx_cpu_pct_of_one_core']}%{monitor}; the producer process {f['producer_cpu_s']} s in all")
    b = f["cpu_per_completion_us"]
    print(f"  CPU per completion: the loader {b['loader']} µs (pipeline {b['pipeline']}, record fetches "
          f"{b['record_fetches']}, writer {b['writer']}), PostgreSQL {b['postgresql']}, monitor {b['monitor']}, "
          f"broker {b['broker']}, nginx {b['nginx']}, producer {b['producer']}; all {b['all']} µs: this machine's "
          f"{b['cores']} cores hold at most {b['ceiling_per_s']:,} completions/s with all of them on it")
    check = f["rows_check"]
    print(f"  rows: {check['statuses']}, resources {check['resources']}, {check['samples_per_run']} samples per run — "
          f"{'every activation in one complete success row' if check['ok'] else 'ROWS WRONG'}")


def show_ratios(f: dict, reference: dict) -> None:
    overall, p99 = f["completions_per_s_overall"] or 0, f["event_to_row_ms"]["p99"]
    commit_ms = reference["single_insert_commit_ms"]["p50"]
    print(f"  {f['target_rate_per_s']:g}/s, monitor {'on' if f['monitor'] else 'off'}: {overall} completions/s = "
          f"{overall / reference['rows_per_s']:.3f} × raw INSERT throughput; p99 event-to-row {p99} ms = "
          f"{p99 / commit_ms:.0f} × one single-row INSERT + commit")


def goals(runs: list[dict]) -> dict:
    """The issue's goals over the runs: sustained rates, p99 at 5,000/s with the monitor, capacity."""
    kept_up = [f for f in runs if f["rows_check"]["ok"] and f["lost"] == 0
               and f["drain_after_last_event_s"] is not None and f["drain_after_last_event_s"] <= KEEP_UP_S
               and f["produced_rate_per_s"] >= 0.99 * f["target_rate_per_s"]]
    out = {}
    for monitor in sorted({f["monitor"] for f in runs}):
        mine = [f for f in runs if f["monitor"] is monitor]
        at_goal = [f for f in mine if f["target_rate_per_s"] == GOAL_PER_S]
        p99 = at_goal[0]["event_to_row_ms"]["p99"] if at_goal else None
        out["monitor_on" if monitor else "monitor_off"] = {
            "best_sustained_per_s": max((f["target_rate_per_s"] for f in kept_up if f["monitor"] is monitor),
                                        default=0),
            "capacity_per_s": max((f["completions_per_s_overall"] or 0 for f in mine), default=0),
            # what the cores hold at the CPU per completion of the fastest run (all processes on them)
            "ceiling_per_s": max(mine, key=lambda f: f["target_rate_per_s"])["cpu_per_completion_us"]["ceiling_per_s"],
            "p99_event_to_row_ms_at_5000": p99,
            "p99_met": p99 is not None and p99 <= GOAL_P99_MS}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="5000,10000", help="user events per second, comma-separated")
    parser.add_argument("--duration-s", type=float, default=20.0, help="how long events are produced per rate")
    parser.add_argument("--monitor", choices=("off", "on", "both"), default="both",
                        help="a real monitor answering: off, on, or each rate without then with it")
    parser.add_argument("--fetches-in-flight", type=int, default=None,
                        help="completion:fetches_in_flight (default: the loader's)")
    parser.add_argument("--activation-ms", type=float, default=10.0,
                        help="with the monitor: each activation's window (3 samples per row at 10 ms; 1000: ~102)")
    parser.add_argument("--fire-interval-ms", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="database:batch_size (default: the loader's)")
    parser.add_argument("--flush-interval-ms", type=float, default=None,
                        help="database:flush_interval_s, in ms (default: the loader's)")
    parser.add_argument("--fetch-wait-ms", type=int, default=None,
                        help="openwhisk:user_events:fetch_wait_ms (default: the loader's)")
    parser.add_argument("--producer", help=argparse.SUPPRESS)
    parser.add_argument("--ids", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start-epoch", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.producer:
        producer(args.producer, args.ids, args.rate, args.out, args.start_epoch)
        return 0
    # Under /tmp and world-traversable: as root, the embedded PostgreSQL runs as an unprivileged user.
    scratch = Path(tempfile.mkdtemp(prefix="faasload-bench-completions-", dir="/tmp"))
    scratch.chmod(0o755)
    services = monitor = None
    results: dict = {"runs": {}}
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.monitor]
    try:
        services = Services(scratch)
        create_topic(services.broker.bootstrap)
        if True in modes:
            monitor = MonitorSide(scratch, activation_s=args.activation_ms / 1000)
        from faasload import gc_tuning
        from loader.config import CompletionConfig, DatabaseSection, UserEventsConfig
        from loader.pipeline import switch_interval_s
        from loader.sending.processes import LEAD_S
        fetches_in_flight = args.fetches_in_flight or CompletionConfig().fetches_in_flight
        fetch_wait_ms = args.fetch_wait_ms or UserEventsConfig().fetch_wait_ms
        flush_interval_s = (args.flush_interval_ms / 1000 if args.flush_interval_ms is not None
                            else DatabaseSection().flush_interval_s)
        batch_size = args.batch_size or DatabaseSection().batch_size
        gc_tuning.tune()  # as the loader's Pipeline does for its run
        sys.setswitchinterval(switch_interval_s(LEAD_S) or sys.getswitchinterval())  # likewise
        for rate in [float(r) for r in args.rates.split(",") if r.strip()]:
            for with_monitor in modes:
                figures = measure(services, scratch, rate, args.duration_s, fetches_in_flight, fetch_wait_ms,
                                  batch_size, flush_interval_s, args.fire_interval_ms / 1000, monitor if with_monitor else None)
                show(figures)
                results["runs"][f"{rate:g}{'-monitor' if with_monitor else ''}"] = figures
        runs = list(results["runs"].values())
        if monitor is not None:
            cost = results["monitor_query_cost"] = monitor.query_cost()
            print(f"monitor answers (client + monitor, wall, per activation): one query each "
                  f"{cost['batch_1_us_per_activation']} µs, batches of 50 {cost['batch_50_us_per_activation']} µs, "
                  f"of 200 {cost['batch_200_us_per_activation']} µs "
                  f"({cost['batch_1_us_per_activation'] / cost['batch_200_us_per_activation']:.1f}× less per activation)")
        reference = reference_figures(services, max(f["activations"] for f in runs))
        results["reference"] = reference
        print(f"reference (same PostgreSQL, same run): plain INSERTs of completed rows {reference['rows_per_s']:g} "
              f"rows/s in transactions of {reference['transaction_rows']}; one single-row INSERT + commit p50 "
              f"{reference['single_insert_commit_ms']['p50']} ms, p99 {reference['single_insert_commit_ms']['p99']} ms")
        for f in runs:
            show_ratios(f, reference)
        results["goal"] = goals(runs)
        for mode, g in results["goal"].items():
            print(f"{mode.replace('_', ' ')}: sustained (every row correct and committed within {KEEP_UP_S:g} s of "
                  f"the last event) up to {g['best_sustained_per_s']:g} events/s offered; capacity {g['capacity_per_s']}"
                  f" completions/s ({g['capacity_per_s'] / reference['rows_per_s']:.3f} × raw INSERTs)"
                  + ("" if g["p99_event_to_row_ms_at_5000"] is None else
                     f"; p99 event-to-row at {GOAL_PER_S}/s {g['p99_event_to_row_ms_at_5000']} ms"))
        on = results["goal"].get("monitor_on")
        if on is not None:
            met = on["p99_met"] and on["best_sustained_per_s"] >= GOAL_PER_S
            print(f"goal (monitor on: {GOAL_PER_S}/s sustained with p99 event-to-row ≤ {GOAL_P99_MS:g} ms): "
                  f"{'met' if met else 'MISSED'}; capacity ≥ {GOAL_CAPACITY_PER_S}/s: "
                  f"{'met' if on['capacity_per_s'] >= GOAL_CAPACITY_PER_S else 'MISSED'} (this machine's cores hold "
                  f"at most {on['ceiling_per_s']:,}/s at the CPU per completion of the run at the highest rate)")
    finally:
        if monitor is not None:
            monitor.close()
        if services is not None:
            services.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"results: {_common.write_results('completion_pipeline', results)}")
    return 0


def reference_figures(services: Services, rows: int) -> dict:
    from loader.storage import experiments
    conn = experiments.open_store(services.database)
    experiment_id = experiments.ensure_experiment(conn, name=f"bench-reference-{uuid.uuid4().hex[:6]}",
                                                  mode="injection")
    conn.close()
    return insert_reference(services.database, experiment_id, rows)


if __name__ == "__main__":
    sys.exit(main())
