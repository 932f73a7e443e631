"""The monitor's activation bindings at scale: housekeeping time and memory per binding.

    python bench/monitor_bindings.py [--counts 10000,100000,1000000]

At 5,000 activations/s the monitor holds every binding for ``maxage_s`` + ``retention_s`` (900 s
by default): 4.5 million.  For each count, a :class:`monitor.registry.Registry` (the monitor's own,
in this process, on a copy of the test suite's cgroup v2 fixture: nothing is sampled) gets that
many activations bound to one running container (a start and an end notice each, as the invoker
sends them), then:

* **a pass that expires nothing** (the common case, twice a second in the daemon, under the
  registry's lock, which notices and queries also take): its time, and that time as a share of the
  housekeeping period;
* **a pass that expires a tenth** (the clock moved past ``maxage_s`` + ``retention_s`` of the
  oldest tenth): its time per expired binding;
* **memory per binding** (tracemalloc, the activation id's string counted apart; each notice's
  container id a string of its own, as the daemon parses it), against the physical reference,
  the id string itself.

Housekeeping used to scan every binding on every pass: 269 ms per pass at 200,000 bindings on this
machine (commit ``d9dd38e``), i.e. the monitor's lock held half of every period from ~40 s into a
5,000/s run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

_common.use_repo_imports()
ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures_data" / "cgroup_v2"
CONTAINER = "4f1c3a9e0b7d2c8e5a6f1b3d9c0e7a2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c"
MAXAGE_S, RETENTION_S = 600.0, 300.0


def build(tree: Path, count: int, *, traced: bool):
    from faasload.clock import FakeClock
    from faasload.monitor_protocol import ActivationNotice, Boundary, ContainerNotice, Lifecycle
    from monitor.cgroups import CgroupV2Reader
    from monitor.daemon import HOUSEKEEPING_PERIOD_S
    from monitor.discovery import Discovery
    from monitor.registry import Registry

    clock = FakeClock(start_s=100.0, epoch_offset_s=1_700_000_000.0)
    reader = CgroupV2Reader(tree)
    registry = Registry(reader, Discovery(reader), clock, resolution_s=0.01, maxage_s=MAXAGE_S,
                        retention_s=RETENTION_S)
    registry.apply(ContainerNotice(Lifecycle.RUN, CONTAINER))
    ids = [f"{i:032x}" for i in range(count)]
    step_s = 0.0002  # 5,000 bindings per second of the fake clock
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if traced else 0
    half = len(CONTAINER) // 2
    for activation in ids:
        # each notice's container id a string of its own, as the daemon parses it from each message
        registry.apply(ActivationNotice(Boundary.START, CONTAINER[:half] + CONTAINER[half:], activation,
                                        clock.epoch_s()))
        registry.apply(ActivationNotice(Boundary.END, CONTAINER[:half] + CONTAINER[half:], activation,
                                        clock.epoch_s()))
        clock.advance(step_s)
    per_binding = (tracemalloc.get_traced_memory()[0] - before) / count if traced else None
    if traced:
        tracemalloc.stop()
    return registry, clock, ids, step_s, per_binding, HOUSEKEEPING_PERIOD_S


def measure(tree: Path, count: int) -> dict:
    registry, clock, ids, step_s, _, period_s = build(tree, count, traced=False)
    start = time.perf_counter()
    registry.housekeeping()
    idle_s = time.perf_counter() - start
    assert len(registry.bindings) == count
    tenth = count // 10
    clock.advance(MAXAGE_S + RETENTION_S - count * step_s + tenth * step_s)
    start = time.perf_counter()
    registry.housekeeping()
    expiring_s = time.perf_counter() - start
    expired = count - len(registry.bindings)
    del registry
    _, _, ids2, _, per_binding, _ = build(tree, min(count, 200_000), traced=True)
    id_bytes = sys.getsizeof(ids2[0])
    return {"bindings": count, "housekeeping_idle_ms": round(idle_s * 1000, 3),
            "idle_share_of_period": round(idle_s / period_s, 6), "period_s": period_s,
            "expired": expired, "housekeeping_expiring_ms": round(expiring_s * 1000, 2),
            "per_expired_us": round(expiring_s / max(1, expired) * 1e6, 2),
            "bytes_per_binding": round(per_binding or 0), "id_string_bytes": id_bytes,
            "ratio_to_id_string": round((per_binding or 0) / id_bytes, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="10000,100000,1000000", help="binding counts, comma-separated")
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "cg"
        shutil.copytree(FIXTURE, tree)
        for count in [int(c) for c in args.counts.split(",") if c.strip()]:
            f = measure(tree, count)
            runs.append(f)
            print(f"{count} bindings: a housekeeping pass that expires nothing {f['housekeeping_idle_ms']} ms "
                  f"({100 * f['idle_share_of_period']:.4f}% of its {f['period_s']:g} s period); one that expires "
                  f"{f['expired']} {f['housekeeping_expiring_ms']} ms ({f['per_expired_us']} µs each); "
                  f"{f['bytes_per_binding']} B per binding besides its id = {f['ratio_to_id_string']} × the id "
                  f"string ({f['id_string_bytes']} B)")
    print(f"results: {_common.write_results('monitor_bindings', {'runs': runs})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
