"""How localwhisk frames HTTP/1.1 requests and answers, over real sockets (issue 16, item 10).

HEAD answers the GET's head without its body; a chunked request body is decoded; a body over
the server's limit, or an invocation over OpenWhisk's 1 MB payload limit, is answered 413; a
malformed or negative ``Content-Length`` is answered 400 instead of dropping the connection.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import time
import urllib.parse

import pytest

from loader.platform.http import HttpTransport

TID_RE = re.compile(r"\A[A-Za-z0-9]{32}\Z")
ECHO = "def main(args):\n    return {'args': args}\n"
LENGTHS = "def main(args):\n    return {k: len(str(v)) for k, v in args.items()}\n"
ONE_MB = 1024 * 1024


@pytest.fixture(scope="module")
def user(localwhisk):
    key = localwhisk.create_user(f"framing-{time.time_ns()}")
    localwhisk.deploy(key, "echo", ECHO)
    localwhisk.deploy(key, "lengths", LENGTHS)
    return key


def _address(localwhisk) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(localwhisk.apihost)
    return parts.hostname, parts.port


def _basic(key: str) -> str:
    return "Basic " + base64.b64encode(key.encode()).decode()


class RawClient:
    """One TCP connection; requests written byte by byte, answers parsed by http.client."""

    def __init__(self, localwhisk):
        self.sock = socket.create_connection(_address(localwhisk), timeout=30)
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self, method: str = "GET") -> tuple[http.client.HTTPResponse, bytes]:
        response = http.client.HTTPResponse(_FileSocket(self.reader), method=method)
        response.begin()
        return response, response.read()

    def closed_by_server(self) -> bool:
        self.sock.settimeout(5)
        try:
            return self.reader.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class _FileSocket:
    """What HTTPResponse needs from a socket: makefile() giving the shared reader, which
    HTTPResponse may "close" at the end of an answer without closing the connection."""

    def __init__(self, reader):
        self._reader = reader

    def makefile(self, mode):
        return _Unclosable(self._reader)


class _Unclosable:
    def __init__(self, reader):
        self._reader = reader

    def __getattr__(self, name):
        return getattr(self._reader, name)

    def close(self) -> None:
        pass


@pytest.fixture
def raw(localwhisk):
    client = RawClient(localwhisk)
    yield client
    client.close()


def _error(body: bytes) -> dict:
    value = json.loads(body)
    assert set(value) == {"error", "code"} and TID_RE.match(value["code"])
    return value


# --------------------------------------------------------------------------- HEAD

def test_head_answers_the_get_head_without_a_body(localwhisk, user, raw):
    auth = _basic(user).encode()
    raw.send(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + b"\r\n\r\n")
    get, get_body = raw.answer()
    raw.send(b"HEAD /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + b"\r\n\r\n")
    head, head_body = raw.answer("HEAD")
    assert head.status == get.status == 200 and head_body == b""
    assert head.getheader("Content-Length") == str(len(get_body))
    assert head.getheader("Content-Type") == get.getheader("Content-Type")
    # nothing stray on the connection: the next answer parses
    raw.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    after, after_body = raw.answer()
    assert after.status == 200 and after_body == b"pong"


def test_head_of_an_error_has_no_body_either(raw):
    raw.send(b"HEAD /api/v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = raw.answer("HEAD")
    assert head.status == 404 and body == b"" and int(head.getheader("Content-Length")) > 0
    raw.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.answer()[1] == b"pong"


def test_loader_client_keeps_working_after_a_head(localwhisk, user):
    transport = HttpTransport(localwhisk.apihost)
    try:
        head = transport.request("HEAD", "/api/v1/namespaces", headers={"Authorization": _basic(user)})
        assert head.status == 200 and head.body == b""
        after = transport.request("GET", "/api/v1/namespaces", headers={"Authorization": _basic(user)})
        assert after.status == 200 and len(json.loads(after.body)) == 1
    finally:
        transport.close()


# --------------------------------------------------------------------------- chunked request bodies

def test_chunked_invocation_body_is_decoded(user, raw):
    payload = json.dumps({"greeting": "hello", "n": 7}).encode()
    chunks = [payload[:5], payload[5:11], payload[11:]]
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-Trailer: t\r\n\r\n"
    raw.send(b"POST /api/v1/namespaces/_/actions/echo?blocking=true&result=true HTTP/1.1\r\nHost: x\r\n"
             b"Authorization: " + _basic(user).encode() + b"\r\nContent-Type: application/json\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n" + body)
    response, answer = raw.answer()
    assert response.status == 200, answer
    assert json.loads(answer) == {"args": {"greeting": "hello", "n": 7}}
    raw.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection stays usable
    assert raw.answer()[1] == b"pong"


@pytest.mark.parametrize("body", [b"zz\r\nab\r\n0\r\n\r\n", b"-1\r\nab\r\n0\r\n\r\n", b"2\r\nabXY0\r\n\r\n"])
def test_malformed_chunked_body_is_400(user, raw, body):
    raw.send(b"POST /api/v1/namespaces/_/actions/echo HTTP/1.1\r\nHost: x\r\nAuthorization: "
             + _basic(user).encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    response, answer = raw.answer()
    assert response.status == 400
    assert _error(answer)["error"].startswith("The request content was malformed:")
    assert response.getheader("Connection") == "close" and raw.closed_by_server()


def test_unknown_transfer_coding_is_501(user, raw):
    raw.send(b"POST /api/v1/namespaces/_/actions/echo HTTP/1.1\r\nHost: x\r\nAuthorization: "
             + _basic(user).encode() + b"\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
    response, answer = raw.answer()
    assert response.status == 501 and "gzip" in _error(answer)["error"]


def test_content_length_with_chunked_is_400(user, raw):
    raw.send(b"POST /api/v1/namespaces/_/actions/echo HTTP/1.1\r\nHost: x\r\nAuthorization: "
             + _basic(user).encode() + b"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    response, answer = raw.answer()
    assert response.status == 400 and raw.closed_by_server()


# --------------------------------------------------------------------------- Content-Length

@pytest.mark.parametrize("value", [b"abc", b"-5", b"1e3", b"5, 6", b" "])
def test_malformed_content_length_is_400_not_a_dropped_connection(user, raw, value):
    raw.send(b"POST /api/v1/namespaces/_/actions/echo HTTP/1.1\r\nHost: x\r\nAuthorization: "
             + _basic(user).encode() + b"\r\nContent-Length: " + value + b"\r\n\r\n{}")
    response, answer = raw.answer()
    assert response.status == 400
    assert "Content-Length" in _error(answer)["error"]
    assert response.getheader("Connection") == "close" and raw.closed_by_server()


def test_body_over_the_server_limit_is_413_without_reading_it(localwhisk, user, raw):
    from localwhisk.http.server import MAX_BODY_BYTES
    declared = MAX_BODY_BYTES + 1
    started = time.monotonic()
    raw.send(b"PUT /api/v1/namespaces/_/actions/huge HTTP/1.1\r\nHost: x\r\nAuthorization: "
             + _basic(user).encode() + b"\r\nContent-Length: %d\r\n\r\n{\"exec\":" % declared)
    response, answer = raw.answer()
    assert time.monotonic() - started < 5  # answered at once, not after reading 64 MB
    assert response.status == 413
    assert _error(answer)["error"] == f"Request larger than allowed: {declared} > {MAX_BODY_BYTES} bytes."
    assert response.getheader("Connection") == "close"
    assert localwhisk.session.get(localwhisk.url("actions/huge"), auth=tuple(user.split(":", 1)),
                                  timeout=10).status_code == 404


def test_chunked_body_over_the_server_limit_is_413(user, raw, monkeypatch):
    from localwhisk.http.server import MAX_BODY_BYTES
    chunk = b"a" * ONE_MB
    raw.send(b"PUT /api/v1/namespaces/_/actions/huge HTTP/1.1\r\nHost: x\r\nAuthorization: "
             + _basic(user).encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
        for _ in range(MAX_BODY_BYTES // ONE_MB + 1):
            raw.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed before the end
    response, answer = raw.answer()
    assert response.status == 413
    assert _error(answer)["error"].startswith("Request larger than allowed:")


# --------------------------------------------------------------------------- OpenWhisk's 1 MB limits

def _post_lengths(localwhisk, user, data: bytes, query: str = "blocking=true&result=true"):
    return localwhisk.session.post(localwhisk.url(f"actions/lengths?{query}"), data=data,
                                   headers={"Content-Type": "application/json"}, auth=tuple(user.split(":", 1)),
                                   timeout=60)


def test_invocation_payload_over_1mb_is_413_with_openwhisk_text(localwhisk, user):
    padding = "x" * (ONE_MB - len('{"p":""}'))
    at_limit = json.dumps({"p": padding}, separators=(",", ":")).encode()
    assert len(at_limit) == ONE_MB
    accepted = _post_lengths(localwhisk, user, at_limit)
    assert accepted.status_code == 200 and accepted.json() == {"p": len(padding)}
    over = at_limit[:-2] + b'x"}'
    rejected = _post_lengths(localwhisk, user, over, "blocking=true")
    assert rejected.status_code == 413
    body = rejected.json()
    assert body == {"error": f"Request larger than allowed: {ONE_MB + 1} > {ONE_MB} bytes.",
                    "code": rejected.headers["X-Request-ID"]}
    assert "x-openwhisk-activation-id" not in rejected.headers


def test_action_parameters_over_1mb_are_413_with_openwhisk_text(localwhisk, user):
    value = "v" * ONE_MB
    body = {"exec": {"kind": "python:3.11", "code": ECHO}, "parameters": [{"key": "big", "value": value}]}
    response = localwhisk.session.put(localwhisk.url("actions/bigparams"), json=body,
                                      auth=tuple(user.split(":", 1)), timeout=30)
    size = len("big") + len(json.dumps(value))  # OpenWhisk: key bytes + compact JSON of the value
    assert response.status_code == 413
    assert response.json()["error"] == f"parameters larger than allowed: {size} > {ONE_MB} bytes."
    annotated = {"exec": {"kind": "python:3.11", "code": ECHO}, "annotations": [{"key": "a", "value": value}]}
    response = localwhisk.session.put(localwhisk.url("actions/bigparams"), json=annotated,
                                      auth=tuple(user.split(":", 1)), timeout=30)
    assert response.status_code == 413
    assert response.json()["error"] == f"annotations larger than allowed: {1 + len(json.dumps(value))} > {ONE_MB} bytes."
    assert localwhisk.session.get(localwhisk.url("actions/bigparams"), auth=tuple(user.split(":", 1)),
                                  timeout=10).status_code == 404
