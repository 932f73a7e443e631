"""The incremental HTTP/1.1 answer parser of the event-loop senders, fed byte by byte and in pieces."""

from __future__ import annotations

import pytest

from loader.platform.http import TransportError
from loader.platform.http_parse import finish_at_eof, parse_response

ANSWER = b'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n{"activationId":"ab"}'
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n")


def _feed_bytewise(data: bytes, method: str = "POST"):
    buffer = bytearray()
    results = []
    for i in range(len(data)):
        buffer += data[i:i + 1]
        found = parse_response(buffer, method)
        if found is not None:
            results.append((i, found))
    return results, buffer


def test_content_length_answer_is_complete_only_at_its_last_byte():
    results, rest = _feed_bytewise(ANSWER + ANSWER[:10])
    assert [i for i, _ in results] == [len(ANSWER) - 1]
    response, keep = results[0][1]
    assert (response.status, response.body, keep) == (202, b'{"activationId":"ab"}', True)
    assert response.headers["content-type"] == "application/json"
    assert bytes(rest) == ANSWER[:10]  # the next answer's first bytes stay


def test_chunked_body_with_extensions_and_trailers():
    results, rest = _feed_bytewise(CHUNKED)
    assert [i for i, _ in results] == [len(CHUNKED) - 1] and rest == bytearray()
    assert results[0][1][0].body == b"Wikipedia"


def test_interim_answers_are_skipped_and_connection_close_is_honoured():
    buffer = bytearray(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nConnection: close\r\n"
                       b"Content-Length: 2\r\n\r\n{}")
    response, keep = parse_response(buffer, "POST")
    assert (response.status, response.body, keep) == (429, b"{}", False)


def test_http_1_0_without_keep_alive_is_not_reused():
    response, keep = parse_response(bytearray(b"HTTP/1.0 202 OK\r\nContent-Length: 0\r\n\r\n"), "POST")
    assert (response.status, keep) == (202, False)


def test_body_to_the_end_of_the_connection():
    buffer = bytearray(b"HTTP/1.1 200 OK\r\n\r\npartial")
    assert parse_response(buffer, "POST") is None
    buffer += b" body"
    assert finish_at_eof(buffer, "POST").body == b"partial body"


@pytest.mark.parametrize("data, message", [
    (b"", "closed connection without response"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "in the middle of the response head"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "in the middle of the response body"),
])
def test_an_early_end_of_the_connection_is_an_error(data, message):
    with pytest.raises(TransportError, match=message):
        finish_at_eof(bytearray(data), "POST")


@pytest.mark.parametrize("data, message", [
    (b"HTTX/1.1 200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY", "not followed by CRLF"),
])
def test_malformed_answers_are_errors_naming_the_part(data, message):
    with pytest.raises(TransportError, match=message):
        parse_response(bytearray(data), "POST")


def test_an_endless_head_is_refused():
    with pytest.raises(TransportError, match="longer than"):
        parse_response(bytearray(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20_000), "POST")
