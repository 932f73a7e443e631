"""The output directory: ``traces/``, ``manifest.yml``, ``mapping.csv``, ``dropped.csv``, ``workload.json``.

Everything is written into a hidden sibling directory first and renamed to ``--out`` at
the end, so an interrupted or failed conversion never leaves a directory that looks
complete.  ``--out`` must not exist, or be an empty directory.  Every file is written in
a fixed order with fixed formatting (sorted keys, no time stamps), so the same inputs and
seed give byte-identical files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from .records import WorkloadError

MAPPING_COLUMNS = ("trace_file", "user", "action", "source_owner", "source_app", "source_function", "invocations",
                   "trigger", "duration_ms_p50", "duration_ms_p75", "memory_mb_p50", "memory_mb_p75", "memory_origin",
                   "action_duration_ms", "action_memory_mb", "distance", "memory_limit_mb", "timeout_ms", "clamps")
DROPPED_COLUMNS = ("source_owner", "source_app", "source_function", "invocations", "reason")
BUFFER_LINES = 4096


def format_wait(wait_us: int) -> str:
    """Microseconds as the trace's WAIT field: seconds with six decimals, exact."""
    return f"{wait_us // 1_000_000}.{wait_us % 1_000_000:06d}"


def format_number(value: float | None, decimals: int = 3) -> str:
    """A number rounded to ``decimals`` without trailing zeros; empty for None."""
    if value is None:
        return ""
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class OutputDir:
    """A conversion's output, committed atomically to ``path``."""

    def __init__(self, path: Path):
        self.path = path
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise WorkloadError(f"--out {path}", "exists and is not an empty directory (nothing is overwritten)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.work = path.parent / f".{path.name}.partial-{os.getpid()}"
        shutil.rmtree(self.work, ignore_errors=True)
        self.traces = self.work / "traces"
        self.traces.mkdir(parents=True)
        self._mapping_stream = open(self.work / "mapping.csv", "w", newline="", encoding="utf-8")
        self.mapping = csv.writer(self._mapping_stream, lineterminator="\n")
        self.mapping.writerow(MAPPING_COLUMNS)

    def write_trace(self, name: str, lines: Iterable[tuple[int, str]]) -> int:
        """``(offset_us, "INPUT[\\tPARAM:VALUE...]")`` in time order → one trace file; the number of lines."""
        count = previous = 0
        buffer: list[str] = []
        with open(self.traces / name, "w", encoding="utf-8", newline="\n") as stream:
            for offset_us, rest in lines:
                buffer.append(f"{format_wait(offset_us - previous)}\t{rest}\n")
                previous = offset_us
                count += 1
                if len(buffer) >= BUFFER_LINES:
                    stream.write("".join(buffer))
                    buffer.clear()
            stream.write("".join(buffer))
        if count == 0:  # rate scaling thinned every invocation away: no trace
            (self.traces / name).unlink()
        return count

    def write_manifest(self, actions: dict[str, dict], header: str) -> None:
        """A wskdeploy manifest, one action per line in flow style (JSON is valid YAML), sorted by name."""
        with open(self.work / "manifest.yml", "w", encoding="utf-8") as stream:
            stream.write(header + "packages:\n  default:\n    actions:\n")
            stream.writelines(f"      {name}: {json.dumps(actions[name], sort_keys=True)}\n" for name in sorted(actions))

    def write_dropped(self, rows: Iterable[tuple]) -> None:
        with open(self.work / "dropped.csv", "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(DROPPED_COLUMNS)
            writer.writerows(rows)

    def write_json(self, name: str, document: dict) -> None:
        text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
        (self.work / name).write_text(text + "\n", encoding="utf-8")

    def commit(self) -> None:
        self._mapping_stream.close()
        if self.path.exists():
            self.path.rmdir()
        os.rename(self.work, self.path)

    def abort(self) -> None:
        self._mapping_stream.close()
        shutil.rmtree(self.work, ignore_errors=True)
