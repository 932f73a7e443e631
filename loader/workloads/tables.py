"""Reading the sources' CSV tables with errors that name ``file:line`` and the column.

:func:`rows` streams a CSV file as ``(line number, {column: text})``, after checking that
the header holds the required columns; :func:`number` and :func:`count` convert one cell.
:func:`sha256` fingerprints a source file for ``workload.json``.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

from .records import SourceFile, WorkloadError

CHUNK_BYTES = 1 << 20


def sha256(path: Path, shown_as: str | None = None) -> SourceFile:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return SourceFile(shown_as or str(path), digest.hexdigest(), size)


def _text_lines(path: Path) -> Iterator[str]:
    """The file's lines as text; a decoding error names the line."""
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise WorkloadError(str(path), f"cannot read: {exc.strerror or exc}") from None
    with stream:
        for number, raw in enumerate(stream, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                raise WorkloadError(f"{path}:{number}", "not UTF-8 text (is it a CSV file?)") from None


def header_problem(header: list[str], required: tuple[str, ...], what: str) -> str | None:
    missing = [c for c in required if c not in header]
    if not missing:
        return None
    shown = ",".join(header[:6]) + (",..." if len(header) > 6 else "")
    if len(missing) == len(required):
        return f"not {what}: none of the columns {', '.join(required)} in the first line ({shown!r})"
    return f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} ({what}; the header is {shown!r})"


def rows(path: Path, required: tuple[str, ...], what: str) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV file whose header holds ``required``; blank lines skipped."""
    reader = csv.reader(_text_lines(path))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise WorkloadError(f"{path}:1", f"not a CSV file: {exc}") from None
    if header is None:
        raise WorkloadError(str(path), f"empty file (expected {what})")
    header = [h.strip() for h in header]
    problem = header_problem(header, required, what)
    if problem:
        raise WorkloadError(f"{path}:1", problem)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise WorkloadError(f"{path}:{reader.line_num}", f"not a CSV line: {exc}") from None
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(header):
            raise WorkloadError(f"{path}:{reader.line_num}", f"{len(fields)} fields, the header has {len(header)}")
        yield reader.line_num, dict(zip(header, fields))


def number(row: dict[str, str], column: str, where: str, *, minimum: float = 0.0) -> float:
    """A finite number >= ``minimum`` from ``row[column]``."""
    text = row[column].strip()
    try:
        value = float(text)
    except ValueError:
        raise WorkloadError(where, f"column {column}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < minimum:
        raise WorkloadError(where, f"column {column}: {text!r} is not a finite number >= {minimum:g}")
    return value


def count(text: str, column: str, where: str) -> int:
    """A non-negative integer count."""
    stripped = text.strip()
    try:
        value = int(stripped)
    except ValueError:
        raise WorkloadError(where, f"column {column}: {stripped!r} is not an integer count") from None
    if value < 0:
        raise WorkloadError(where, f"column {column}: negative count {value}")
    return value
