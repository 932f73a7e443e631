"""FaaSLoad injection traces: one file per user-action, read as streams (docs/injection_traces.md).

A trace file is named ``USER-ACTION[-METADATA...]`` and holds one invocation per line::

    WAIT<TAB>INPUT[<TAB>PARAM:VALUE]...

``WAIT`` is the (fractional) number of seconds since the previous invocation of the same
trace (since the common start for the first line).  Offsets are accumulated exactly, in
integer microseconds, so a long trace does not drift.  ``INPUT`` is the input object; its
basename is passed to the action as ``object``, with ``incont``/``outcont`` from the
configuration.  Blank lines and lines starting with ``#`` are ignored.

:class:`FileTraceSource` reads ahead a bounded chunk of its file and holds no open file
between reads (a run may hold 10,000 traces); :func:`scan_trace` reads a whole file once
and reports every malformed line as ``file:line: reason``.
"""

from __future__ import annotations

import decimal
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from loader.plan import LONGEST_TRACE, MAX_OFFSET_US, PlannedInvocation, TraceEnded

#: Parameters the loader adds itself; a trace may not set them.
STORAGE_PARAMETERS = ("incont", "object", "outcont")
_WAIT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_US_PER_S = decimal.Decimal(1_000_000)
#: What one trace reads ahead by default: a page, ~100 lines of a typical trace per refill.
READ_AHEAD_BYTES = 4096
#: What a whole run reads ahead (:func:`read_ahead_bytes`), shared out with each trace within the bounds
#: below: 4 KiB each at 1,000 traces (a 1,000,000-line set holds 4 MB), 512 bytes each beyond 8,192.
READ_AHEAD_TOTAL_BYTES = 4 * 1024 * 1024
READ_AHEAD_MIN_BYTES = 512
READ_AHEAD_MAX_BYTES = 64 * 1024


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
    whole, _, fraction = text.partition(".")
    if (text.isascii() and len(fraction) <= 6 and (whole or fraction) and (not whole or whole.isdigit())
            and (not fraction or fraction.isdigit())):  # the usual case, exact in integers: no Decimal
        wait_us = int(whole or 0) * 1_000_000 + (int(fraction) * 10 ** (6 - len(fraction)) if fraction else 0)
        if wait_us <= MAX_OFFSET_US:
            return wait_us
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
    if "\x00" in text:
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


def read_ahead_bytes(traces: int) -> int:
    """How much of each of ``traces`` files a run reads ahead: :data:`READ_AHEAD_TOTAL_BYTES` shared out,
    within [:data:`READ_AHEAD_MIN_BYTES`, :data:`READ_AHEAD_MAX_BYTES`]."""
    return max(READ_AHEAD_MIN_BYTES, min(READ_AHEAD_MAX_BYTES, READ_AHEAD_TOTAL_BYTES // max(1, traces)))


class FileTraceSource:
    """A :class:`loader.plan.TraceSource` over one trace file, read ahead in chunks.

    Holds no open file between reads: each refill opens the file, checks it, reads up to
    ``read_ahead_bytes`` (at least one whole line) from where the last read ended, and
    closes it; the lines are then handed out of memory.  A refill costs ~10 µs of system
    calls, so at ~40 bytes a line a 4 KiB chunk brings it to ~0.1 µs per invocation, where
    reopening the file for each line (as before) cost more than the rest of the scheduler;
    and memory stays bounded per file (see :func:`read_ahead_bytes` for a whole run).

    Given what the check found (``planned`` invocations in the file ``identity``), it
    notices a file deleted, renamed, replaced or truncated since (a ``stat`` of the path
    before each line is handed out, ~1 µs), and raises :class:`TraceError` naming the line
    it could not read and how many planned invocations are lost: the same line as when
    each line was read from the file itself.
    """

    def __init__(self, path: Path, *, incont: str, outcont: str, planned: int | None = None,
                 identity: tuple[int, int] | None = None, read_ahead_bytes: int = READ_AHEAD_BYTES):
        if read_ahead_bytes < 1:
            raise ValueError("read_ahead_bytes must be at least 1")
        self.path = Path(path)
        self._path_text = str(self.path)
        trace = parse_name(self.path)
        self.name, self.user, self.action = trace.name, trace.user, trace.action
        self.incont, self.outcont = incont, outcont
        self.planned, self.identity = planned, identity
        self.read_ahead_bytes = read_ahead_bytes
        self._buffer = b""       # bytes read ahead, from the start of the next line
        self._cursor = 0         # where the next line starts in the buffer
        self._position = 0       # file offset of the next line (bytes replayed)
        self._read_to = 0        # file offset where the buffer ends
        self._at_end = False     # the last refill reached the end of the file
        self._line_number = 0
        self._seq = 0
        self._offset_us = 0
        self._ended = False

    @classmethod
    def of_scan(cls, scan: TraceScan, *, incont: str, outcont: str,
                read_ahead_bytes: int = READ_AHEAD_BYTES) -> FileTraceSource:
        """The source of a checked trace: it holds the file to what the check read."""
        return cls(scan.path, incont=incont, outcont=outcont, planned=scan.invocations, identity=scan.identity,
                   read_ahead_bytes=read_ahead_bytes)

    def _stop(self, reason: str, line: int | None = None) -> TraceError:
        """End the trace: the error naming the line that could not be read (default: the next) and what is lost."""
        self._ended = True
        lost = None if self.planned is None else max(0, self.planned - self._seq)
        return TraceError(self.path, line or self._line_number + 1, reason, lost=lost)

    def _refill(self) -> None:
        """Read ahead from where the buffer ends, after checking the file: at least one whole line, or to the end."""
        with open(self.path, "rb", buffering=0) as stream:
            status = os.fstat(stream.fileno())
            if self.identity is not None and (status.st_dev, status.st_ino) != self.identity:
                raise self._stop("the file was replaced since it was checked")
            if status.st_size < self._position:
                raise self._stop(f"the file is shorter ({status.st_size} bytes) than the {self._position} bytes "
                                 "already replayed: truncated since it was checked")
            stream.seek(self._read_to)
            kept = self._buffer[self._cursor:]
            chunks, size, wanted = [kept], len(kept), self.read_ahead_bytes
            while True:
                data = stream.read(wanted)
                if not data:
                    self._at_end = True
                    break
                chunks.append(data)
                size += len(data)
                if len(data) < wanted:
                    self._at_end = True
                    break
                if b"\n" in data:
                    break
                wanted *= 2  # a line longer than the chunk: read on until it ends
        self._buffer = b"".join(chunks) if len(chunks) > 1 else kept
        self._cursor = 0
        self._read_to = self._position + size

    def _still_holds(self, line_end: int) -> bool:
        """Whether the file, checked again by its path, still holds the line ending at ``line_end``.

        One ``stat`` (~1 µs): a file replaced, deleted or truncated is noticed at the line
        that follows the change, even when that line was read ahead."""
        status = os.stat(self._path_text)
        if self.identity is not None and (status.st_dev, status.st_ino) != self.identity:
            raise self._stop("the file was replaced since it was checked")
        if status.st_size < self._position:
            raise self._stop(f"the file is shorter ({status.st_size} bytes) than the {self._position} bytes "
                             "already replayed: truncated since it was checked")
        return status.st_size >= line_end

    def _next_line(self) -> bytes | None:
        """The raw bytes of the next line (newline included), or None where the file ends."""
        end = self._buffer.find(b"\n", self._cursor)
        if end < 0:
            self._refill()
            end = self._buffer.find(b"\n", self._cursor)
            if end < 0:  # the end of the file: its last line may lack a newline
                if self._cursor >= len(self._buffer):
                    return None
                end = len(self._buffer) - 1
        raw = self._buffer[self._cursor:end + 1]
        if not self._still_holds(self._position + len(raw)):
            return None  # cut before this line's end since it was read ahead
        self._cursor = end + 1
        self._position += len(raw)
        return raw

    def next_invocation(self) -> PlannedInvocation | None:
        if self._ended:
            return None
        try:
            while (raw := self._next_line()) is not None:
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
        self._buffer = b""
        return None
