"""Incremental parsing of HTTP/1.1 answers from bytes as they arrive (for non-blocking sockets).

:func:`parse_response` looks at the bytes received so far on one connection and returns the
first complete answer (consuming its bytes), or None while it is incomplete.  It accepts
what OpenWhisk answers and nothing more, like the blocking client of
:mod:`loader.platform.http`: a status line, headers, a body framed by ``Content-Length``,
by chunked transfer coding, or by the end of the connection (:func:`finish_at_eof`);
interim 1xx answers are skipped.  Malformed answers raise :class:`TransportError`.
"""

from __future__ import annotations

from loader.platform.http import MAX_HEAD_BYTES, Response, TransportError, parse_head

_CRLF = b"\r\n"
_END_OF_HEAD = b"\r\n\r\n"


def _head(buffer: bytearray, end: int) -> tuple[int, bytes, dict[str, str]]:
    return parse_head(bytes(buffer[:end]))


def _chunked_body(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """The decoded body and the offset past its end, or None while incomplete."""
    parts: list[bytes] = []
    position = start
    while True:
        line_end = buffer.find(_CRLF, position)
        if line_end < 0:
            if len(buffer) - position > 1024:
                raise TransportError("malformed response: chunk size line longer than 1024 bytes")
            return None
        try:
            size = int(bytes(buffer[position:line_end]).split(b";")[0].strip(), 16)
        except ValueError:
            raise TransportError(f"malformed response: chunk size {bytes(buffer[position:line_end])[:40]!r}") from None
        position = line_end + 2
        if size == 0:
            while True:  # trailers, up to an empty line
                line_end = buffer.find(_CRLF, position)
                if line_end < 0:
                    return None
                empty = line_end == position
                position = line_end + 2
                if empty:
                    return b"".join(parts), position
        if len(buffer) < position + size + 2:
            return None
        parts.append(bytes(buffer[position:position + size]))
        if buffer[position + size:position + size + 2] != _CRLF:
            raise TransportError("malformed response: chunk not followed by CRLF")
        position += size + 2


def parse_response(buffer: bytearray, method: str) -> tuple[Response, bool] | None:
    """The first complete answer in ``buffer`` and whether the connection can be reused.

    Consumes the answer's bytes from ``buffer``; None (nothing consumed) while incomplete or
    while the body runs to the end of the connection (then call :func:`finish_at_eof`).
    """
    while True:
        end = buffer.find(_END_OF_HEAD)
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise TransportError(f"malformed response: response head longer than {MAX_HEAD_BYTES} bytes")
            return None
        status, version, headers = _head(buffer, end)
        body_start = end + 4
        if 100 <= status < 200 and status != 101:
            del buffer[:body_start]
            continue
        break
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version == b"HTTP/1.1" or "keep-alive" in connection)
    if method == "HEAD" or status in (204, 304):
        del buffer[:body_start]
        return Response(status, headers, b""), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        found = _chunked_body(buffer, body_start)
        if found is None:
            return None
        body, after = found
        del buffer[:after]
        return Response(status, headers, body), keep
    length = headers.get("content-length")
    if length is None:
        return None  # delimited by the end of the connection
    try:
        count = int(length.split(",")[0])
    except ValueError:
        raise TransportError(f"malformed response: Content-Length {length[:40]!r}") from None
    if count < 0:
        raise TransportError(f"malformed response: Content-Length {length[:40]!r}")
    if len(buffer) < body_start + count:
        return None
    body = bytes(buffer[body_start:body_start + count])
    del buffer[:body_start + count]
    return Response(status, headers, body), keep


def finish_at_eof(buffer: bytearray, method: str) -> Response:
    """At the end of the connection: the answer whose body ran to it; TransportError if incomplete."""
    found = parse_response(buffer, method)
    if found is not None:
        return found[0]
    end = buffer.find(_END_OF_HEAD)
    if end < 0:
        if not buffer:
            raise TransportError("RemoteDisconnected: Remote end closed connection without response")
        raise TransportError("connection closed in the middle of the response head")
    status, _, headers = _head(buffer, end)
    if "chunked" in headers.get("transfer-encoding", "").lower() or "content-length" in headers:
        raise TransportError("connection closed in the middle of the response body")
    body = bytes(buffer[end + 4:])
    buffer.clear()
    return Response(status, headers, body)
