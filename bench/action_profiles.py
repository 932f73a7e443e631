"""Profile the actions of a wskdeploy manifest: p75 duration and p75 peak memory, for ``--map nearest``.

    python bench/action_profiles.py [--manifest actions/manifest.yml] [--runs 20] [--seed 1]

Runs every action of the manifest that has an ``input_kind``, as the platform's Python
runtime runs it (``/usr/bin/python3``, a fresh process per run: module load, then
``main(args)``), on inputs from ``actions/inputs.py`` and parameters drawn from the
action's specs, ``--runs`` times.  Prints, per action, the p50/p75 wall time of ``main``
(ms) and the p50/p75 peak resident memory of the process (MB, ``ru_maxrss``): the
``profile: {duration_ms, memory_mb}`` annotation that ``python -m loader.workloads --map
nearest`` needs (docs/workloads.md).  On a platform, prefer the figures of a generator-mode
dataset (the query is in docs/workloads.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _common

_common.use_repo_imports()

from actions import inputs
from loader import functions
from loader.generation.traces import EXTENSIONS, as_text, draw, new_stream

PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
DRIVER = """
import importlib.util, json, resource, sys, time
spec = importlib.util.spec_from_file_location("main__", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
start = time.perf_counter()
result = module.main(json.loads(sys.argv[2]))
wall_ms = (time.perf_counter() - start) * 1e3
print(json.dumps({"wall_ms": wall_ms, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "error": result.get("error")}))
"""


def profile(row, storage: Path, runs: int, seed: int, count: int) -> dict:
    rng = new_stream(seed, row.name)
    specs = functions.parameter_specs(row)
    walls, rss = [], []
    for run in range(runs):
        args = {"incont": "faasload-inputs", "object": f"{1 + run % count}.{EXTENSIONS[row.input_kind]}",
                "outcont": "faasload-outputs", **{s.name: as_text(draw(rng, s)) for s in specs}}
        done = subprocess.run([PYTHON, "-I", "-c", DRIVER, row.code_path, json.dumps(args)],
                              env={"PATH": "/usr/bin:/bin", "FAASLOAD_STORAGE": str(storage),
                                   "__OW_ACTIVATION_ID": f"{run:032x}"}, capture_output=True, text=True, check=True)
        figures = json.loads(done.stdout)
        if figures["error"]:
            raise SystemExit(f"{row.name}: {figures['error']}")
        walls.append(figures["wall_ms"])
        rss.append(figures["maxrss_kib"] / 1024)
    return {"duration_ms_p50": round(_common.percentile(walls, 50), 1),
            "duration_ms_p75": round(_common.percentile(walls, 75), 1),
            "memory_mb_p50": round(_common.percentile(rss, 50), 1), "memory_mb_p75": round(_common.percentile(rss, 75), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=_common.ROOT / "actions" / "manifest.yml")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--inputs", type=int, default=10, help="inputs per kind (1..N)")
    args = parser.parse_args()
    rows = [r for r in functions.read_functions(args.manifest) if r.input_kind]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        storage = Path(scratch)
        inputs.generate(storage / "faasload-inputs", {kind: args.inputs for kind in EXTENSIONS}, seed=args.seed)
        for row in rows:
            results[row.name] = profile(row, storage, args.runs, args.seed, args.inputs)
            print(f"{row.name}: " + ", ".join(f"{k} {v}" for k, v in results[row.name].items()))
    print(f"results: {_common.write_results('action_profiles', {'machine': _common.machine(), 'actions': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
