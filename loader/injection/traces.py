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
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loader.plan import PlannedInvocation

#: Parameters the loader adds itself; a trace may not set them.
STORAGE_PARAMETERS = ("incont", "object", "outcont")
_WAIT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_US_PER_S = decimal.Decimal(1_000_000)


class TraceError(ValueError):
    """A malformed trace line or file name; ``str()`` is ``file:line: reason``."""

    def __init__(self, path: Path | str, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: {reason}" if line is not None else f"{path}: {reason}")


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
    return int((decimal.Decimal(text) * _US_PER_S).to_integral_value(decimal.ROUND_HALF_EVEN))


def parse_line(text: str) -> TraceLine | None:
    """One line without its newline; None for blank and comment lines; ValueError when malformed."""
    if not text.strip() or text.lstrip().startswith("#"):
        return None
    fields = text.split("\t")
    if len(fields) < 2:
        raise ValueError("expected WAIT<TAB>INPUT[<TAB>PARAM:VALUE]... (fields are separated by tabs)")
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


def _lines(path: Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(end offset, raw bytes) of each line from byte ``start``."""
    with open(path, "rb") as stream:
        stream.seek(start)
        offset = start
        for raw in stream:
            offset += len(raw)
            yield offset, raw


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8").rstrip("\n").rstrip("\r")


def scan_trace(path: Path) -> TraceScan:
    """Read a trace once (streaming) and collect every problem with its line number."""
    name = parse_name(path)
    problems: list[TraceError] = []
    count = offset_us = 0
    try:
        with open(path, "rb") as stream:
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
                    count += 1
                    offset_us += line.wait_us
    except OSError as exc:
        problems.append(TraceError(path, None, f"cannot read: {exc.strerror or exc}"))
    return TraceScan(name, path, count, offset_us, tuple(problems))


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
    that thousands of traces hold neither memory nor file descriptors.
    """

    def __init__(self, path: Path, *, incont: str, outcont: str):
        self.path = Path(path)
        trace = parse_name(self.path)
        self.name, self.user, self.action = trace.name, trace.user, trace.action
        self.incont, self.outcont = incont, outcont
        self._position = 0
        self._line_number = 0
        self._seq = 0
        self._offset_us = 0
        self._ended = False

    def next_invocation(self) -> PlannedInvocation | None:
        if self._ended:
            return None
        for end, raw in _lines(self.path, self._position):
            self._position = end
            self._line_number += 1
            try:
                line = parse_line(_decode(raw))
            except UnicodeDecodeError:
                self._ended = True
                raise TraceError(self.path, self._line_number, "not valid UTF-8") from None
            except ValueError as exc:
                self._ended = True
                raise TraceError(self.path, self._line_number, str(exc)) from None
            if line is None:
                continue
            self._offset_us += line.wait_us
            invocation = PlannedInvocation(
                trace_name=self.name, seq=self._seq, user=self.user, action=self.action,
                planned_offset_us=self._offset_us, input_object=line.input_object,
                parameters=storage_parameters(line.input_object, self.incont, self.outcont) + line.parameters)
            self._seq += 1
            return invocation
        self._ended = True
        return None
