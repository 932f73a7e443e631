"""User events read by several loaders at once: does every loader keep up when each reads every partition?

    python bench/events_fanout.py [--loaders 3] [--rate 10000] [--duration-s 10]

``--producers`` processes publish OpenWhisk ``Activation`` user events (the ``EventMessage`` shape,
no key, as OpenWhisk) at ``--rate`` events/s for ``--duration-s`` to a Tansu broker, from the
users of ``--loaders`` shards (``--users`` per shard, each event's ``userId`` the user's
UUID).  ``--loaders`` consumer processes each run the loader's real
:class:`loader.completion.user_events.EventConsumer` (manual assignment of every partition, no
group), keeping only their own users' events (``accept_user_ids``) as a shard does.

Per loader it prints: own events received / published for it, foreign events dropped, the lag
from publication (the event's ``timestamp``, ms) to the loader's handling p50/p99/max, and the
consumer process's CPU (% of one core over the run).  It holds when every loader received all
its own events and its lag does not grow with time (the last events' lag is near the first's).
The rate actually published is printed: on a busy machine the producers fall short of the target.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

_common.use_repo_imports()
TOPIC = "events"


def consume(index: int, bootstrap: str, user_ids: list[str], expected: int, ready, results, timeout_s: float) -> None:
    from loader.completion.user_events import EventConsumer
    lags_ms: list[float] = []
    arrivals: list[float] = []
    own = {"n": 0}

    def on_events(events) -> None:
        now_ms = time.time() * 1000
        for event in events:
            own["n"] += 1
            arrivals.append(now_ms)
            lags_ms.append(now_ms - stamps.pop(event.activation_id, now_ms))

    stamps: dict[str, float] = {}
    consumer = EventConsumer([bootstrap], TOPIC, on_events, poll_timeout_s=0.05, accept_user_ids=frozenset(user_ids))
    original = consumer.handle

    def handle(value):   # keep the publication time of each event for the lag
        try:
            message = json.loads(value)
            stamps[message["body"]["activationId"]] = message["timestamp"]
        except (ValueError, KeyError, TypeError):
            pass
        return original(value)

    consumer.handle = handle
    while not consumer.tick() or not consumer.ready:
        time.sleep(0.05)
    ready.put(index)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started_s = time.monotonic()
    deadline_s = started_s + timeout_s
    while own["n"] < expected and time.monotonic() < deadline_s:
        consumer.tick()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    wall_s = time.monotonic() - started_s
    cpu_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    tail = lags_ms[-max(1, len(lags_ms) // 10):]
    results.put({"loader": index + 1, "own_received": own["n"], "own_published": expected,
                 "foreign_dropped": consumer.stats.foreign, "messages": consumer.stats.messages,
                 "lag_ms": _common.spread(lags_ms), "last_tenth_lag_ms_p50": _common.percentile(tail, 50),
                 "cpu_pct_of_one_core": round(100 * cpu_s / wall_s, 1) if wall_s else None})
    consumer.stop()


def produce(bootstrap: str, users: list[list[str]], rate: float, duration_s: float, part: int, parts: int) -> None:
    """Events ``n`` with ``n % parts == part``, each at its due time ``n / rate`` from the start."""
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=[bootstrap], linger_ms=2, acks=1, batch_size=256 * 1024)
    flat = [(shard, uid) for shard, ids in enumerate(users) for uid in ids]
    total = int(rate * duration_s)
    started_s = time.monotonic()
    for n in range(part, total, parts):
        due_s = started_s + n / rate
        delay_s = due_s - time.monotonic()
        if delay_s > 0.001:
            time.sleep(delay_s)
        shard, uid = flat[n % len(flat)]
        message = {"source": f"invoker{n % 2}", "subject": "bench", "namespace": f"ns{uid[:8]}", "userId": uid,
                   "eventType": "Activation", "timestamp": time.time() * 1000,
                   "body": {"name": "ns/action", "activationId": f"{n:032x}", "statusCode": 0, "duration": 10,
                            "waitTime": 3, "initTime": 0, "kind": "python:3.11", "conductor": False,
                            "memory": 256}}
        producer.send(TOPIC, json.dumps(message, separators=(",", ":")).encode())
    producer.flush(30)
    producer.close(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loaders", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10_000.0, help="events/s in all")
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=20, help="users per loader")
    parser.add_argument("--producers", type=int, default=2, help="producer processes (one kafka-python producer "
                                                                 "holds a few thousand events/s)")
    args = parser.parse_args()
    from kafka import KafkaProducer

    from faasload import tansu
    work = Path(f"/tmp/faasload-bench-fanout-{os.getpid()}")
    broker = tansu.start(work)
    try:
        probe = KafkaProducer(bootstrap_servers=[broker.bootstrap])
        probe.send(TOPIC, b'{"eventType": "probe"}').get(10)   # the topic exists before the loaders assign it
        probe.close()
        users = [[str(uuid.uuid4()) for _ in range(args.users)] for _ in range(args.loaders)]
        total = int(args.rate * args.duration_s)
        flat_shards = [shard for shard, ids in enumerate(users) for _ in ids]
        expected = [sum(1 for n in range(total) if flat_shards[n % len(flat_shards)] == k) for k in range(args.loaders)]
        context = multiprocessing.get_context("spawn")
        ready, results = context.Queue(), context.Queue()
        consumers = [context.Process(target=consume, args=(k, broker.bootstrap, users[k], expected[k], ready, results,
                                                           args.duration_s + 60)) for k in range(args.loaders)]
        for process in consumers:
            process.start()
        for _ in consumers:
            ready.get(timeout=60)
        load0 = os.getloadavg()[0]
        producers = [context.Process(target=produce, args=(broker.bootstrap, users, args.rate, args.duration_s, p,
                                                           args.producers)) for p in range(args.producers)]
        started_s = time.monotonic()
        for producer in producers:
            producer.start()
        for producer in producers:
            producer.join()
        produce_s = time.monotonic() - started_s
        figures = sorted((results.get(timeout=args.duration_s + 120) for _ in consumers), key=lambda r: r["loader"])
        for process in consumers:
            process.join(30)
    finally:
        broker.stop()
    print(f"{args.loaders} loaders, {total} events published in {produce_s:.1f} s "
          f"({total / produce_s:.0f}/s; target {args.rate:g}/s); load average {load0:.1f}")
    for f in figures:
        lag = f["lag_ms"]
        print(f"  loader {f['loader']}: own {f['own_received']}/{f['own_published']}, foreign dropped "
              f"{f['foreign_dropped']}, lag p50 {lag['p50']} p99 {lag['p99']} max {lag['max']} ms (last tenth p50 "
              f"{f['last_tenth_lag_ms_p50']} ms), consumer CPU {f['cpu_pct_of_one_core']}% of a core")
    print(f"results: {_common.write_results('events_fanout', {'args': vars(args), 'published_per_s': total / produce_s, 'loaders': figures})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
