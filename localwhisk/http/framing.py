"""Request body framing (RFC 9112 §6): ``Content-Length`` or ``Transfer-Encoding: chunked``.

A body is read whole, up to a limit; what cannot be framed raises :class:`FramingError` with
the status to answer (400 malformed, 413 too large, 501 unknown transfer coding).  After a
framing error the rest of the connection cannot be parsed, so the server closes it.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import Protocol

from localwhisk import errors

_DIGITS = re.compile(r"\A[0-9]+\Z")
_HEX = re.compile(rb"\A[0-9A-Fa-f]+\Z")
MAX_LINE_BYTES = 4096      # a chunk-size line or a trailer line, at most
MAX_TRAILER_LINES = 100


class Stream(Protocol):
    """The request's buffered input (``BaseHTTPRequestHandler.rfile``)."""

    def read(self, size: int = -1, /) -> bytes: ...
    def readline(self, size: int = -1, /) -> bytes: ...


class FramingError(Exception):
    """The body cannot be read: answer ``status`` with ``text`` and close the connection."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status
        self.text = text


def _malformed(detail: str) -> FramingError:
    return FramingError(400, f"The request content was malformed:\n{detail}")


def too_large(size: int, limit: int) -> FramingError:
    return FramingError(413, errors.entity_too_big("Request", size, limit))


def declared_length(headers: Message, limit: int) -> int | None:
    """The ``Content-Length`` (None when chunked or absent); raises before any body byte is read."""
    codings = [c.strip().lower() for v in headers.get_all("Transfer-Encoding") or [] for c in v.split(",")]
    lengths = headers.get_all("Content-Length") or []
    if codings:
        unknown = [c for c in codings if c != "chunked"]
        if unknown:
            raise FramingError(501, f"Transfer coding '{unknown[0]}' is not implemented (only chunked).")
        if codings != ["chunked"]:
            raise _malformed("Transfer-Encoding must end with a single 'chunked'")
        if lengths:
            raise _malformed("both Content-Length and Transfer-Encoding given")
        return None
    if not lengths:
        return 0
    if len(lengths) > 1 or not _DIGITS.match(lengths[0].strip()):
        shown = ", ".join(lengths)[:40]
        raise _malformed(f"illegal Content-Length header value '{shown}' (expected one non-negative integer)")
    length = int(lengths[0].strip())
    if length > limit:
        raise too_large(length, limit)
    return length


def read_body(headers: Message, stream: Stream, limit: int) -> bytes:
    """The whole request body, at most ``limit`` bytes."""
    length = declared_length(headers, limit)
    if length is None:
        return _read_chunked(stream, limit)
    body = stream.read(length) if length else b""
    if len(body) < length:
        raise _malformed(f"the connection ended after {len(body)} of {length} body bytes")
    return body


def _line(stream: Stream, what: str) -> bytes:
    line = stream.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise _malformed(f"{what} longer than {MAX_LINE_BYTES} bytes")
    if not line.endswith(b"\n"):
        raise _malformed(f"the connection ended in a {what}")
    return line.rstrip(b"\r\n")


def _read_chunked(stream: Stream, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_text = _line(stream, "chunk size line").split(b";", 1)[0].strip()
        if not _HEX.match(size_text):
            raise _malformed(f"chunk size {size_text[:20]!r} is not a hexadecimal number")
        size = int(size_text, 16)
        if size == 0:
            break
        if total + size > limit:
            raise too_large(total + size, limit)
        data = stream.read(size)
        if len(data) < size:
            raise _malformed(f"the connection ended inside a chunk ({len(data)} of {size} bytes)")
        if stream.read(2) != b"\r\n":
            raise _malformed("a chunk is not followed by CRLF")
        parts.append(data)
        total += size
    for _ in range(MAX_TRAILER_LINES):  # trailer fields are read and ignored
        if not _line(stream, "trailer line"):
            return b"".join(parts)
    raise _malformed(f"more than {MAX_TRAILER_LINES} trailer lines")
