"""FaaSLoad injection traces: one file per user-action, read as streams (docs/injection_traces.md).

A trace file is named ``USER-ACTION[-METADATA...]`` and holds one invocation per line::

    WAIT<TAB>INPUT[<TAB>PARAM:VALUE]...

``WAIT`` is the (fractional) number of seconds since the previous invocation of the same
trace (since the common start for the first line).  Offsets are accumulated exactly, in
integer microseconds, so a long trace does not drift.  ``INPUT`` is the input object; its
basename is passed to the action as ``object``, with ``incont``/``outcont`` from the
configuration.  Blank lines and lines starting with ``#`` are ignored.

:class:`FileTraceSource` keeps one line in memory and no open file between reads (a run
may hold 10,000 traces); :func:`scan_trace` reads a whole file once and reports every
malformed line as ``file:line: reason``.
"""

from __future__ import annotations

import decimal
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loader.plan import LONGEST_TRACE, MAX_OFFSET_US, PlannedInvocation, TraceEnded

#: Parameters the loader adds itself; a trace may not set them.
STORAGE_PARAMETERS = ("incont", "object", "outcont")
_WAIT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_US_PER_S = decimal.Decimal(1_000_000)


class TraceError(TraceEnded):
    """A malformed trace line or file name, or a trace that cannot be read further; ``str()`` is
    ``file:line: reason``."""

    def __init__(self, path: Path | str, line: int | None, reason: str, *, lost: int | None = None):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: {reason}" if line is not None else f"{path}: {reason}", lost=lost)

    def report(self) -> dict:
        return {**super().report(), "file": self.path, "line": self.line}


@dataclass(frozen=True, slots=True)
class TraceName:
    """What a trace file name says: whose key invokes which action."""

    name: str
    user: str
    action: str
    metadata: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TraceLine:
    """One parsed line: the wait before it, its input and its own parameters."""

    wait_us: int
    input_object: str
    parameters: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class TraceScan:
    """The result of reading a whole trace once."""

    name: TraceName
    path: Path
    invocations: int
    last_offset_us: int
    problems: tuple[TraceError, ...]
    identity: tuple[int, int] | None = None   # (device, inode) of the file that was read


def parse_name(path: Path) -> TraceName:
    """``USER-ACTION[-...]``; raises :class:`TraceError` when the name has no user or action."""
    fields = path.name.split("-")
    if len(fields) < 2 or not fields[0] or not fields[1]:
        raise TraceError(path, None, "file name is not USER-ACTION[-...] (user and action separated by '-')")
    return TraceName(path.name, fields[0], fields[1], tuple(fields[2:]))


def parse_wait_us(text: str) -> int:
    """Seconds as written (``1``, ``0.25``, ``.5``) to integer µs, exactly (half-even below 1 µs)."""
    if not _WAIT.fullmatch(text):
        raise ValueError(f"WAIT {text!r} is not a non-negative number of seconds")
    wait_us = int((decimal.Decimal(text) * _US_PER_S).to_integral_value(decimal.ROUND_HALF_EVEN))
    if wait_us > MAX_OFFSET_US:
        raise ValueError(f"WAIT {text} s is beyond {LONGEST_TRACE}")
    return wait_us


def check_offset(offset_us: int) -> None:
    """ValueError when a trace reaches ``offset_us`` after the start, beyond the longest trace replayed."""
    if offset_us > MAX_OFFSET_US:
        raise ValueError(f"the trace reaches {decimal.Decimal(offset_us) / _US_PER_S} s after the start, beyond {LONGEST_TRACE}")


def parse_line(text: str) -> TraceLine | None:
    """One line without its newline; None for blank and comment lines; ValueError when malformed."""
    if not text.strip() or text.lstrip().startswith("#"):
        return None
    fields = text.split("\t")
    if len(fields) < 2:
        raise ValueError("expected WAIT<TAB>INPUT[<TAB>PARAM:VALUE]... (fields are separated by tabs)")
    for position, field in enumerate(fields, start=1):
        if "\x00" in field:
            name = {1: " (WAIT)", 2: " (INPUT)"}.get(position, "")
            raise ValueError(f"field {position}{name} holds a NUL byte (\\x00), which the database cannot store")
    wait_us = parse_wait_us(fields[0].strip())
    input_object = fields[1].strip()
    if not input_object:
        raise ValueError("INPUT (second field) is empty")
    parameters = []
    seen = set()
    for position, field in enumerate(fields[2:], start=3):
        name, sep, value = field.partition(":")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"field {position} {field!r} is not PARAM:VALUE")
        if name in STORAGE_PARAMETERS:
            raise ValueError(f"field {position}: parameter {name!r} is set by the loader (incont, object, outcont)")
        if name in seen:
            raise ValueError(f"field {position}: parameter {name!r} given twice")
        seen.add(name)
        parameters.append((name, value.rstrip("\r")))
    return TraceLine(wait_us, input_object, tuple(parameters))


def storage_parameters(input_object: str, incont: str, outcont: str) -> tuple[tuple[str, str], ...]:
    """The parameters FaaSLoad actions expect: where the input is and where to write."""
    return (("incont", incont), ("object", posixpath.basename(input_object)), ("outcont", outcont))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8").rstrip("\n").rstrip("\r")


def scan_trace(path: Path) -> TraceScan:
    """Read a trace once (streaming) and collect every problem with its line number."""
    name = parse_name(path)
    problems: list[TraceError] = []
    count = offset_us = 0
    identity = None
    try:
        with open(path, "rb") as stream:
            status = os.fstat(stream.fileno())
            identity = (status.st_dev, status.st_ino)
            for number, raw in enumerate(stream, start=1):
                try:
                    line = parse_line(_decode(raw))
                except UnicodeDecodeError:
                    problems.append(TraceError(path, number, "not valid UTF-8"))
                    continue
                except ValueError as exc:
                    problems.append(TraceError(path, number, str(exc)))
                    continue
                if line is not None:
                    try:
                        check_offset(offset_us + line.wait_us)
                    except ValueError as exc:
                        problems.append(TraceError(path, number, str(exc)))
                        continue
                    count += 1
                    offset_us += line.wait_us
    except OSError as exc:
        problems.append(TraceError(path, None, f"cannot read: {exc.strerror or exc}"))
    return TraceScan(name, path, count, offset_us, tuple(problems), identity)


def list_traces(tracedir: Path) -> tuple[list[Path], list[TraceError]]:
    """The trace files of a directory (sorted; hidden files skipped), and the names that are not traces."""
    paths, problems = [], []
    for path in sorted(tracedir.iterdir()):
        if path.name.startswith("."):
            continue
        if not path.is_file():
            problems.append(TraceError(path, None, "not a regular file (a trace directory holds only trace files)"))
            continue
        try:
            parse_name(path)
        except TraceError as exc:
            problems.append(exc)
            continue
        paths.append(path)
    return paths, problems


class FileTraceSource:
    """A :class:`loader.plan.TraceSource` over one trace file.

    Keeps the byte position of the next line and reopens the file for each read, so
    that thousands of traces hold neither memory nor file descriptors.  Given what the
    check found (``planned`` invocations in the file ``identity``), it notices a file
    deleted, renamed, replaced or truncated since, and raises :class:`TraceError` naming
    the line it could not read and how many planned invocations are lost.
    """

    def __init__(self, path: Path, *, incont: str, outcont: str, planned: int | None = None,
                 identity: tuple[int, int] | None = None):
        self.path = Path(path)
        trace = parse_name(self.path)
        self.name, self.user, self.action = trace.name, trace.user, trace.action
        self.incont, self.outcont = incont, outcont
        self.planned, self.identity = planned, identity
        self._position = 0
        self._line_number = 0
        self._seq = 0
        self._offset_us = 0
        self._ended = False

    @classmethod
    def of_scan(cls, scan: TraceScan, *, incont: str, outcont: str) -> FileTraceSource:
        """The source of a checked trace: it holds the file to what the check read."""
        return cls(scan.path, incont=incont, outcont=outcont, planned=scan.invocations, identity=scan.identity)

    def _stop(self, reason: str, line: int | None = None) -> TraceError:
        """End the trace: the error naming the line that could not be read (default: the next) and what is lost."""
        self._ended = True
        lost = None if self.planned is None else max(0, self.planned - self._seq)
        return TraceError(self.path, line or self._line_number + 1, reason, lost=lost)

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        """(end offset, raw bytes) of each line from the current position, after checking the file."""
        with open(self.path, "rb") as stream:
            status = os.fstat(stream.fileno())
            if self.identity is not None and (status.st_dev, status.st_ino) != self.identity:
                raise self._stop("the file was replaced since it was checked")
            if status.st_size < self._position:
                raise self._stop(f"the file is shorter ({status.st_size} bytes) than the {self._position} bytes "
                                 "already replayed: truncated since it was checked")
            stream.seek(self._position)
            offset = self._position
            for raw in stream:
                offset += len(raw)
                yield offset, raw

    def next_invocation(self) -> PlannedInvocation | None:
        if self._ended:
            return None
        try:
            for end, raw in self._lines():
                self._position = end
                self._line_number += 1
                try:
                    line = parse_line(_decode(raw))
                except UnicodeDecodeError:
                    raise self._stop("not valid UTF-8", self._line_number) from None
                except ValueError as exc:
                    raise self._stop(str(exc), self._line_number) from None
                if line is None:
                    continue
                try:
                    check_offset(self._offset_us + line.wait_us)
                except ValueError as exc:
                    raise self._stop(str(exc), self._line_number) from None
                self._offset_us += line.wait_us
                invocation = PlannedInvocation(
                    trace_name=self.name, seq=self._seq, user=self.user, action=self.action,
                    planned_offset_us=self._offset_us, input_object=line.input_object,
                    parameters=storage_parameters(line.input_object, self.incont, self.outcont) + line.parameters)
                self._seq += 1
                return invocation
        except OSError as exc:
            raise self._stop(f"cannot read any further: {exc.strerror or exc} (deleted, renamed or made "
                             "unreadable since it was checked)") from None
        if self.planned is not None and self._seq < self.planned:
            raise self._stop(f"the file ended after {self._seq} of the {self.planned} invocations it held when "
                             "it was checked: truncated since")
        self._ended = True
        return None
