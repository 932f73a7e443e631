"""An activation's samples on their way from the monitor's buffer to the loader's row, per stage,
in batch version 1 (one JSON object per sample) and version 2 (one list per field).

    python bench/answer_path.py [--activation-ms 10,1000] [--activations 1000] [--batch 200] [--rounds 5]

For each activation length, a :class:`monitor.registry.Registry` (the monitor's own, in this
process, on a copy of the test suite's cgroup v2 fixture) holds one container whose buffer has a
sample every 10 ms, and ``--activations`` activations bound to it by start and end notices, each
``--activation-ms`` long (10 ms: ~3 samples per answer; 1000 ms: ~102).  The loader's batches of
``--batch`` activations then go the whole way, in one thread, each stage timed apart (µs per
activation, median of ``--rounds`` passes):

* **monitor**: the monitor's handler parses the batch query and answers it (the buffer's window
  of each activation, the answer encoded), ``monitor.handlers.Handlers.query``;
* **client**: the loader parses the answer and turns each activation's samples into its records
  (``faasload.monitor_protocol.parse_answer``, ``loader.monitor_client.to_records``);
* **writer**: the records cross the pipe to the store writer's process (pickled and unpickled)
  and become the row's four array literals (``loader.storage.writer.sample_arrays``).

The physical reference, in the same run: the JSON work of a version 2 round trip alone,
``json.dumps`` of the answer's data and ``json.loads`` of its bytes, per activation.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import monitor_bindings  # noqa: E402

_common.use_repo_imports()
RESOLUTION_S = 0.01


def build(tree: Path, activations: int, activation_ms: int):
    """A registry with one sampled container and ``activations`` bound to it, and their ids."""
    from faasload.clock import FakeClock
    from faasload.monitor_protocol import ActivationNotice, Boundary, ContainerNotice, Lifecycle
    from monitor.cgroups import CgroupV2Reader
    from monitor.discovery import Discovery
    from monitor.registry import Registry

    clock = FakeClock(start_s=100.0, epoch_offset_s=1_700_000_000.0)
    reader = CgroupV2Reader(tree)
    registry = Registry(reader, Discovery(reader), clock, resolution_s=RESOLUTION_S, maxage_s=600.0,
                        retention_s=300.0)
    container = monitor_bindings.CONTAINER
    registry.apply(ContainerNotice(Lifecycle.RUN, container))
    first_s = clock.epoch_s()
    step_s = 0.005       # activations start 5 ms apart: they overlap when longer
    span_s = activations * step_s + activation_ms / 1000 + 1.0
    buffer = registry.containers[container].buffer
    for n in range(int(span_s / RESOLUTION_S)):
        buffer.append(first_s - 0.5 + n * RESOLUTION_S, 30_000_000 + 4096 * n, 100_000 * n, 29_000_000)
    ids = [f"{i:032x}" for i in range(activations)]
    for n, activation in enumerate(ids):
        start_s = first_s + n * step_s + 0.0031   # not on a sample's date
        registry.apply(ActivationNotice(Boundary.START, container, activation, start_s))
        registry.apply(ActivationNotice(Boundary.END, container, activation, start_s + activation_ms / 1000))
    return registry, clock, ids, first_s + span_s


def measure(tree: Path, activations: int, activation_ms: int, batch: int, rounds: int, version: int) -> dict:
    from faasload.monitor_protocol import ActivationQuery, BatchQuery, encode_query, parse_answer
    from loader.monitor_client import to_records
    from loader.storage.rows import RunKey, RunResources
    from loader.storage.writer import sample_arrays
    from monitor.handlers import Handlers
    from monitor.servers import ReadOutcome

    registry, clock, ids, after_s = build(tree, activations, activation_ms)
    handlers = Handlers(registry, RESOLUTION_S, clock_epoch_s=lambda: after_s)   # every activation ended long ago
    batches = [tuple(ActivationQuery(a) for a in ids[i:i + batch]) for i in range(0, len(ids), batch)]
    queries = [encode_query(BatchQuery(queries, version)) for queries in batches]
    # the reference's data: the answers in version 2, whichever version is measured
    def answer(raw: bytes) -> bytes:
        answered = handlers.query(raw, ReadOutcome.COMPLETE)
        assert answered is not None
        return answered

    data = [json.loads(answer(encode_query(BatchQuery(queries, 2)))) for queries in batches]
    stages: dict[str, list[float]] = {"monitor": [], "client": [], "writer": [], "reference": []}
    samples_per_answer = 0.0
    for _ in range(rounds):
        began = time.perf_counter()
        answers = [answer(raw) for raw in queries]
        stages["monitor"].append(time.perf_counter() - began)
        began = time.perf_counter()
        records = [to_records(samples_of(a)) for raw in answers for a in batch_answers(parse_answer(raw))]
        stages["client"].append(time.perf_counter() - began)
        began = time.perf_counter()
        for seq, samples in enumerate(records):
            item = pickle.loads(pickle.dumps(RunResources(RunKey(1, "t", seq), samples), pickle.HIGHEST_PROTOCOL))
            sample_arrays(item.samples)
        stages["writer"].append(time.perf_counter() - began)
        began = time.perf_counter()
        for value in data:
            json.loads(json.dumps(value))
        stages["reference"].append(time.perf_counter() - began)
        samples_per_answer = sum(len(r) for r in records) / len(records)
        if len(records) != len(ids) or min(len(r) for r in records) < activation_ms // 10:
            raise RuntimeError(f"an activation was answered with too few samples: {min(len(r) for r in records)}")
    per_us = {name: round(statistics.median(times) / len(ids) * 1e6, 2) for name, times in stages.items()}
    return {"version": version, "activation_ms": activation_ms, "activations": activations, "batch": batch,
            "samples_per_answer": round(samples_per_answer, 1), **{f"{k}_us": v for k, v in per_us.items()},
            "total_us": round(per_us["monitor"] + per_us["client"] + per_us["writer"], 2)}


def batch_answers(parsed):
    from faasload.monitor_protocol import BatchAnswer
    if not isinstance(parsed, BatchAnswer):
        raise RuntimeError(f"not a batch answer: {parsed}")
    return parsed.answers


def samples_of(answer):
    from faasload.monitor_protocol import ActivationAnswer
    if not isinstance(answer, ActivationAnswer):
        raise RuntimeError(f"an activation was not answered: {answer}")
    return answer.samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activation-ms", default="10,1000", help="activation lengths, comma-separated")
    parser.add_argument("--activations", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=200, help="activations per batch query")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "cg"
        shutil.copytree(monitor_bindings.FIXTURE, tree)
        for activation_ms in (int(ms) for ms in args.activation_ms.split(",")):
            for version in (1, 2):
                f = measure(tree, args.activations, activation_ms, args.batch, args.rounds, version)
                results.append(f)
                print(f"activations of {activation_ms} ms ({f['samples_per_answer']} samples each), batch version "
                      f"{version}: monitor {f['monitor_us']} + client {f['client_us']} + writer {f['writer_us']} = "
                      f"{f['total_us']} µs per activation = {f['total_us'] / f['reference_us']:.2f} × the JSON "
                      f"round trip of version 2 alone ({f['reference_us']} µs)")
            v1, v2 = results[-2], results[-1]
            print(f"  version 2 against 1: {v2['total_us'] / v1['total_us']:.2f} × the time per activation")
    print(f"results: {_common.write_results('answer_path', {'runs': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
