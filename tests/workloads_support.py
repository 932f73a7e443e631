"""Shared by the workload tests: run the converter, read its traces back, build Azure 2019 files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from loader.injection.traces import parse_line
from loader.workloads.__main__ import main

ROOT_DIR = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
AZURE2019 = DATA / "azure2019-sample"
AZURE2021 = DATA / "azure2021-sample" / "Azure2021_200.csv"
FAASPROFILER = DATA / "faasprofiler" / "workload_configs_local_openwhisk.json"


def convert(capsys, *argv: str) -> tuple[int, str, str]:
    """``python -m loader.workloads ARGV`` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_trace(path: Path) -> list[tuple[int, str, dict[str, str]]]:
    """``(offset_us, input, parameters)`` of every line, offsets accumulated as the loader does."""
    result, offset = [], 0
    for text in path.read_text().splitlines():
        line = parse_line(text)
        if line is None:
            continue
        offset += line.wait_us
        result.append((offset, line.input_object, dict(line.parameters)))
    return result


def mapping(out: Path) -> list[dict[str, str]]:
    with open(out / "mapping.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def workload(out: Path) -> dict:
    return json.loads((out / "workload.json").read_text())


def source_counts(path: Path = AZURE2019 / "invocations.csv") -> dict[str, list[int]]:
    """HashFunction -> its per-minute counts."""
    with open(path, newline="") as stream:
        return {row[2]: [int(c) for c in row[4:]] for row in list(csv.reader(stream))[1:]}


def per_column(offsets: list[int], columns: int, width_us: int = 60_000_000) -> list[int]:
    counts = [0] * columns
    for offset in offsets:
        counts[offset // width_us] += 1
    return counts


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> content)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def published_day(sample: Path, out: Path, day: int = 1) -> Path:
    """The sample rewritten as the published per-day files: minute columns 1..N, memory per app."""
    out.mkdir(parents=True, exist_ok=True)
    with open(sample / "invocations.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    header = rows[0][:4] + [str(i + 1) for i in range(len(rows[0]) - 4)]
    with open(out / f"invocations_per_function_md.anon.d{day:02d}.csv", "w", newline="") as stream:
        csv.writer(stream, lineterminator="\n").writerows([header] + rows[1:])
    (out / f"function_durations_percentiles.anon.d{day:02d}.csv").write_bytes((sample / "durations.csv").read_bytes())
    with open(sample / "memory.csv", newline="") as stream:
        memory = list(csv.reader(stream))
    apps, lines = set(), [["HashOwner", "HashApp"] + memory[0][3:]]
    for row in memory[1:]:
        if row[2] not in apps:  # the sample repeats the app's memory for each of its functions
            apps.add(row[2])
            lines.append([row[1], row[2]] + row[3:])
    with open(out / f"app_memory_percentiles.anon.d{day:02d}.csv", "w", newline="") as stream:
        csv.writer(stream, lineterminator="\n").writerows(lines)
    return out


def write_azure2019_day(out: Path, functions: int, minutes: int = 1440, seed: int = 0, day: int = 1) -> dict:
    """A synthetic published Azure 2019 day of ``functions`` x ``minutes``, shaped like the real one.

    Most functions are rare (a few invocations at random minutes), a fifth are timers (one
    every 5, 15 or 60 minutes), one in 200 is busy (Poisson, 5 per minute); apps hold 1 to
    3 functions, owners 1 to 2 apps.  Returns the counts written.
    """
    import numpy as np
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    zero = ["0"] * minutes
    total = 0
    apps: list[tuple[str, str]] = []
    with open(out / f"invocations_per_function_md.anon.d{day:02d}.csv", "w") as inv, \
            open(out / f"function_durations_percentiles.anon.d{day:02d}.csv", "w") as dur:
        inv.write(",".join(["HashOwner", "HashApp", "HashFunction", "Trigger"] + [str(m + 1) for m in range(minutes)])
                  + "\n")
        dur.write("HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,"
                  "percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,"
                  "percentile_Average_99,percentile_Average_100\n")
        owner = app = ""
        for index in range(functions):
            if not app or rng.random() < 0.5:
                if not owner or rng.random() < 0.6:
                    owner = rng.bytes(32).hex()
                app = rng.bytes(32).hex()
                apps.append((owner, app))
            kind = rng.random()
            cells = list(zero)
            if kind < 0.005:
                counts = rng.poisson(5.0, minutes)
                trigger = "http"
            elif kind < 0.205:
                counts = np.zeros(minutes, dtype=np.int64)
                counts[int(rng.integers(0, 5))::int(rng.choice([5, 15, 60]))] = 1
                trigger = "timer"
            else:
                counts = np.bincount(rng.integers(0, minutes, int(rng.geometric(0.2))), minlength=minutes)
                trigger = "queue"
            for minute in np.flatnonzero(counts):
                cells[minute] = str(int(counts[minute]))
            total += int(counts.sum())
            function = rng.bytes(32).hex()
            inv.write(f"{owner},{app},{function},{trigger}," + ",".join(cells) + "\n")
            p50 = float(rng.lognormal(5, 1.5))
            dur.write(f"{owner},{app},{function},{p50:.0f},{int(counts.sum())},{p50 * 0.2:.1f},{p50 * 5:.1f},"
                      f"{p50 * 0.2:.0f},{p50 * 0.3:.0f},{p50 * 0.7:.0f},{p50:.0f},{p50 * 1.4:.0f},{p50 * 3:.0f},"
                      f"{p50 * 5:.0f}\n")
    with open(out / f"app_memory_percentiles.anon.d{day:02d}.csv", "w") as mem:
        mem.write("HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,"
                  "AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,"
                  "AverageAllocatedMb_pct99,AverageAllocatedMb_pct100\n")
        for owner, app in apps:
            m = float(rng.uniform(20, 300))
            mem.write(f"{owner},{app},100,{m:.1f},{m * 0.8:.1f},{m * 0.85:.1f},{m * 0.95:.1f},{m:.1f},{m * 1.05:.1f},"
                      f"{m * 1.15:.1f},{m * 1.2:.1f},{m * 1.25:.1f}\n")
    return {"functions": functions, "minutes": minutes, "apps": len(apps), "invocations": total}


#: Runs ``python -m loader.workloads`` in a child and prints the child's own peak RSS (KiB) last.
PEAK_RSS_DRIVER = """
import resource, sys
from loader.workloads.__main__ import main
code = main(sys.argv[1:])
print(f"peak_rss_kib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""


def run_measured(*argv: str, cwd: Path) -> tuple[int, float, str]:
    """``python -m loader.workloads ARGV`` as a process: (exit code, its peak RSS in MiB, stderr)."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", PEAK_RSS_DRIVER, *map(str, argv)], cwd=cwd, capture_output=True,
                          text=True, timeout=900, check=False)
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    peak_mib = int(last.split()[1]) / 1024 if last.startswith("peak_rss_kib") else float("nan")
    return done.returncode, peak_mib, done.stderr
