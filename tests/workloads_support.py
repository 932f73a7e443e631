"""Shared by the workload tests: run the converter, read its traces back, build Azure 2019 files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from loader.traces import parse_line
from loader.workloads.__main__ import main

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
