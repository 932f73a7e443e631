"""The monitor's CPU per activation it answers: a batch query through its own handler, in process.

    python bench/monitor_queries.py [--bindings 20000] [--batch 50] [--rounds 5]

The loader asks the monitor for the samples of ~50 completed activations at a time (one batch
query every ~10 ms at 5,000 completions/s).  Here the monitor's :class:`monitor.handlers.Handlers`
answers such batches on the monitor's own :class:`monitor.registry.Registry` (built as
``bench/monitor_bindings.py`` builds it, on a copy of the test suite's cgroup v2 fixture, nothing
sampled: ``--bindings`` activations bound to one container by start and end notices, 10 ms
apart), whose container's buffer holds a sample every 10 ms over the whole span: each answer
holds the ~3 samples around its activation, as in the completion bench.  Measured: the
handler's time per activation (parsing the query, the registry and buffer lookups, encoding the
answer), the median of ``--rounds`` passes over 2,000 activations, in this one thread (no socket,
no wait for the sample after the end: the activations ended long before).

The physical reference, in the same run: the protocol's own JSON work for the same batches,
``json.loads`` of each query and ``json.dumps`` of its answer's data, per activation.
"""

from __future__ import annotations

import argparse
import json
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
ASKED = 2000


def measure(tree: Path, bindings: int, batch: int, rounds: int) -> dict:
    from faasload.monitor_protocol import ActivationQuery, BatchQuery, encode_query
    from monitor.handlers import Handlers
    from monitor.servers import ReadOutcome

    registry, clock, ids, step_s, _, _ = monitor_bindings.build(tree, bindings, traced=False)
    buffer = registry.containers[monitor_bindings.CONTAINER].buffer
    first_s = clock.epoch_s() - bindings * step_s - 1.0
    samples = int((clock.epoch_s() + 1.0 - first_s) / 0.01)
    for n in range(samples):
        buffer.append(first_s + n * 0.01, 30_000_000 + n, n * 100_000, 29_000_000)
    handlers = Handlers(registry, 0.01, clock_epoch_s=lambda: clock.epoch_s() + 10.0)
    asked = ids[-ASKED:]
    raws = [encode_query(BatchQuery(tuple(ActivationQuery(a, "guest", "action", None, None, None)
                                          for a in asked[i:i + batch])))
            for i in range(0, len(asked), batch)]
    answers = [handlers.query(raw, ReadOutcome.COMPLETE) for raw in raws]
    for answer in answers:
        if b'"error"' in answer or b'"date": []' in answer:
            raise RuntimeError(f"an activation was not answered with samples: {answer[:300]!r}")
    handler_us, reference_us = [], []
    decoded = [json.loads(answer) for answer in answers]
    for _ in range(rounds):
        began = time.perf_counter()
        for raw in raws:
            handlers.query(raw, ReadOutcome.COMPLETE)
        handler_us.append((time.perf_counter() - began) / len(asked) * 1e6)
        began = time.perf_counter()
        for raw, value in zip(raws, decoded):
            json.loads(raw)
            json.dumps(value).encode()
        reference_us.append((time.perf_counter() - began) / len(asked) * 1e6)
    samples_per_answer = sum(len(a["samples"]["date"]) for d in decoded for a in d["answers"]) / len(asked)
    handler, reference = statistics.median(handler_us), statistics.median(reference_us)
    return {"bindings": bindings, "batch": batch, "buffer_samples": samples,
            "samples_per_answer": round(samples_per_answer, 2), "handler_us": round(handler, 2),
            "reference_us": round(reference, 2), "ratio": round(handler / reference, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindings", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=50, help="activations per batch query")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "cg"
        shutil.copytree(monitor_bindings.FIXTURE, tree)
        f = measure(tree, args.bindings, args.batch, args.rounds)
    print(f"{f['bindings']} bindings, {f['buffer_samples']} samples in the buffer, batches of {f['batch']}: "
          f"{f['handler_us']} µs per activation answered ({f['samples_per_answer']} samples each) = "
          f"{f['ratio']} × the protocol's JSON work alone ({f['reference_us']} µs)")
    print(f"results: {_common.write_results('monitor_queries', f)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
