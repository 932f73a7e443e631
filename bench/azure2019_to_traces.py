"""Convert an Azure Functions 2019 trace sample into FaaSLoad injection traces.

    python bench/azure2019_to_traces.py OUTDIR [--data DIR] [--minutes N] [--seed S] [--action NAME]

Data: the Azure Functions Trace 2019 (Shahrad et al., "Serverless in the Wild: Characterizing
and Optimizing the Serverless Workload at a Large Cloud Provider", USENIX ATC 2020; CC-BY),
here the 250-function × 150-minute sample committed under ``tests/data/azure2019-sample``
(``invocations.csv``, ``durations.csv``, ``memory.csv``).

Mapping (one FaaSLoad trace per Azure function):

* **user** = one per ``HashOwner``: ``o`` + the first 10 hex digits of the owner hash (more
  digits if two owners would collide);
* **action** = one per ``HashFunction``: ``f`` + the first 10 hex digits of the function hash,
  or ``--action NAME`` for every function (to replay onto one deployed action);
* **file name** ``USER-ACTION-azFUNC10-MEMmb-DURms``: metadata fields are the function's
  average allocated memory (``memory.csv``, MB) and average duration (``durations.csv``,
  ms), ``na`` when the sample has no row for it;
* **times**: the sample gives invocation *counts per minute*; the ``c`` invocations of a minute
  are spread uniformly at random (seeded: ``--seed`` and the function hash) within that minute;
  minute 0 of the output is the first minute column of the sample (or ``--start-minute``).
  Offsets are drawn in integer microseconds and written as exact differences (WAIT with 6
  decimals), so the replay reproduces them without drift;
* **line** ``WAIT<TAB>INPUT<TAB>azure_trigger:TRIGGER``: INPUT is ``--input`` (default
  ``input.dat``), the trigger type is kept as a parameter; functions with no invocation in the
  chosen minutes get no file.

Prints the number of traces, users, invocations, and the mean and peak per-minute rates.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import sys
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "azure2019-sample"
US_PER_MINUTE = 60_000_000


def short_names(hashes: list[str], prefix: str, width: int = 10) -> dict[str, str]:
    """``prefix`` + the shortest hash prefix (≥ ``width`` hex digits) that keeps names distinct."""
    unique = sorted(set(hashes))
    while width < 64:
        names = {h: prefix + h[:width] for h in unique}
        if len(set(names.values())) == len(unique):
            return names
        width += 2
    return {h: prefix + h for h in unique}


def _per_function(path: Path, key: str, value: str) -> dict[str, str]:
    found = {}
    if path.exists():
        with open(path, newline="") as stream:
            for row in csv.DictReader(stream):
                found.setdefault(row[key], row[value])
    return found


def _metadata(raw: str | None) -> str:
    try:
        return str(round(float(raw)))
    except (TypeError, ValueError):
        return "na"


def offsets_us(counts: list[int], rng: random.Random) -> list[int]:
    """Sorted offsets: ``counts[m]`` invocations uniformly within minute ``m``."""
    out = []
    for minute, count in enumerate(counts):
        base = minute * US_PER_MINUTE
        out.extend(sorted(base + rng.randrange(US_PER_MINUTE) for _ in range(count)))
    return out


def trace_lines(offsets: list[int], input_object: str, trigger: str) -> list[str]:
    lines, previous = [], 0
    for offset in offsets:
        wait_us = offset - previous
        previous = offset
        lines.append(f"{wait_us // 1_000_000}.{wait_us % 1_000_000:06d}\t{input_object}\tazure_trigger:{trigger}\n")
    return lines


def convert(data: Path, outdir: Path, *, minutes: int | None, start_minute: int | None, seed: int,
            action: str | None, input_object: str) -> dict:
    with open(data / "invocations.csv", newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        rows = list(reader)
    minute_columns = list(range(4, len(header)))
    if start_minute is not None:
        minute_columns = [i for i in minute_columns if int(header[i]) >= start_minute]
    if minutes is not None:
        minute_columns = minute_columns[:minutes]
    if not minute_columns:
        raise SystemExit("no minute column selected")
    owners = short_names([r[0] for r in rows], "o")
    functions = short_names([r[2] for r in rows], "f")
    memory = _per_function(data / "memory.csv", "HashFunction", "AverageAllocatedMb")
    duration = _per_function(data / "durations.csv", "HashFunction", "Average")
    outdir.mkdir(parents=True, exist_ok=True)
    if any(outdir.iterdir()):
        raise SystemExit(f"{outdir} is not empty")
    per_minute = [0] * len(minute_columns)
    traces = invocations = 0
    users = set()
    for row in rows:
        counts = [int(row[i]) for i in minute_columns]
        if not any(counts):
            continue
        fn_seed = int.from_bytes(hashlib.sha256(f"{seed}:{row[2]}".encode()).digest()[:8], "big")
        offsets = offsets_us(counts, random.Random(fn_seed))
        user, fn = owners[row[0]], functions[row[2]]
        name = f"{user}-{action or fn}-az{row[2][:10]}-{_metadata(memory.get(row[2]))}mb-{_metadata(duration.get(row[2]))}ms"
        (outdir / name).write_text("".join(trace_lines(offsets, input_object, row[3] or "unknown")))
        for minute, count in enumerate(counts):
            per_minute[minute] += count
        traces += 1
        invocations += len(offsets)
        users.add(user)
    return {"traces": traces, "users": len(users), "invocations": invocations, "minutes": len(minute_columns),
            "first_minute": int(header[minute_columns[0]]),
            "mean_rate_per_s": round(invocations / (60 * len(minute_columns)), 2),
            "peak_minute_rate_per_s": round(max(per_minute) / 60, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="directory for the trace files (created; must be empty)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"sample directory (default {DEFAULT_DATA})")
    parser.add_argument("--minutes", type=int, default=None, help="keep only the first N minutes")
    parser.add_argument("--start-minute", type=int, default=None, help="first minute of the day to keep")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--action", default=None, help="invoke this action for every function")
    parser.add_argument("--input", dest="input_object", default="input.dat", help="INPUT field of every line")
    args = parser.parse_args(argv)
    summary = convert(args.data, args.outdir, minutes=args.minutes, start_minute=args.start_minute, seed=args.seed,
                      action=args.action, input_object=args.input_object)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
