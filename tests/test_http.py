"""The loader's HTTP/1.1 client (loader/platform/http.py) against a raw TCP server scripted byte by byte."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from loader.platform.http import HttpTransport, TransportError


class RawServer:
    """Reads each request (head + Content-Length body); answers with the next scripted bytes.

    A script item is a list of byte pieces written with a short pause between them (to split
    the answer over several reads), optionally followed by "close".
    """

    def __init__(self, wrap=None):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script: list = []
        self.requests: list[bytes] = []
        self.connections = 0
        self.wrap = wrap
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.wrap is not None:
                sock = self.wrap(sock)
                if sock is None:
                    continue
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock):
        data = b""
        with sock:
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                while len(data) < length:
                    data += sock.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + data[:length])
                data = data[length:]
                pieces = self.script.pop(0)
                for piece in pieces:
                    if piece == "close":
                        return
                    sock.sendall(piece)
                    time.sleep(0.005)

    def close(self):
        self.listener.close()


@pytest.fixture
def server():
    raw = RawServer()
    yield raw
    raw.close()


def _transport(raw, **kwargs):
    return HttpTransport(f"http://127.0.0.1:{raw.port}/api/v1", **kwargs)


def test_one_write_per_request_with_host_length_and_headers(server):
    server.script = [[b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nX-Request-ID: a\r\nX-Request-ID: b\r\n\r\n{}"]]
    response = _transport(server).request("POST", "/x y", query={"blocking": "false"}, body=b'{"a":1}',
                                          headers={"Authorization": "Basic Zm9v"})
    assert (response.status, response.body) == (202, b"{}")
    assert response.headers["x-request-id"] == "a, b"
    assert server.requests == [b"POST /api/v1/x y?blocking=false HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                               b"Authorization: Basic Zm9v\r\nContent-Length: 7\r\n\r\n{\"a\":1}" % server.port]


def test_answers_split_over_reads_and_chunked_bodies_with_extensions_and_trailers(server):
    server.script = [
        [b"HTTP/1.1 200 OK\r\nContent-", b"Length: 11\r\n\r\nhello", b" world"],
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n", b"6\r\n world\r\n",
         b"0\r\nX-Trailer: t\r\n\r\n"],
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"],
    ]
    transport = _transport(server)
    assert transport.request("GET", "/a").body == b"hello world"
    assert transport.request("GET", "/b").body == b"hello world"
    assert transport.request("GET", "/c").body == b"abc"
    assert server.connections == 1  # all on one kept-alive connection


def test_bodiless_answers_and_connection_close(server):
    server.script = [
        [b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"],           # HEAD: the length is not followed by a body
        [b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"],
        [b"HTTP/1.1 200 OK\r\n\r\nuntil the end", "close"],           # no length: the body ends with the connection
        [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
    ]
    transport = _transport(server)
    assert (transport.request("DELETE", "/a").status, server.connections) == (204, 1)
    assert transport.request("HEAD", "/b").body == b""
    assert transport.request("GET", "/c").status == 404
    assert transport.request("GET", "/d").body == b"until the end"
    assert transport.request("GET", "/e").body == b"ok"
    assert server.connections == 3


@pytest.mark.parametrize("answer, message", [
    (b"HTTP/1.1 2x0 Odd\r\n\r\n", "malformed response: status line b'HTTP/1.1 2x0 Odd'"),
    (b"SPDY/3 200 OK\r\n\r\n", "malformed response: status line b'SPDY/3 200 OK'"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed response: header line b'no colon here'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", "malformed response: Content-Length '-3'"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed response: chunk size b'zz'"),
])
def test_malformed_answers_are_transport_errors(server, answer, message):
    server.script = [[answer, "close"]]
    with pytest.raises(TransportError) as caught:
        _transport(server).request("GET", "/a")
    assert str(caught.value) == message


def test_truncated_body_and_timeout_are_transport_errors(server):
    server.script = [[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "close"], [b"HTTP/1.1 200 "]]
    transport = _transport(server, timeout_s=0.3)
    with pytest.raises(TransportError, match=r"^connection closed after 3 of 10 body bytes$"):
        transport.request("GET", "/a")
    with pytest.raises(TransportError, match=r"^TimeoutError: timed out$"):
        transport.request("GET", "/b")


def test_connection_refused_is_a_transport_error():
    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    with pytest.raises(TransportError, match=r"^ConnectionRefusedError: \[Errno 111\] Connection refused$"):
        HttpTransport(f"http://127.0.0.1:{free}").request("GET", "/")


def test_each_thread_has_its_own_connection(server):
    server.script = [[b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"] for _ in range(8)]
    transport = _transport(server)
    results = []

    def two():
        results.append(transport.request("GET", "/").body + transport.request("GET", "/").body)

    threads = [threading.Thread(target=two) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [b"xx"] * 4 and server.connections == 4


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed for a self-signed certificate")
def test_https_with_and_without_verification(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def wrap(sock):
        try:
            return context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):  # the verifying client refused the handshake
            sock.close()
            return None

    raw = RawServer(wrap=wrap)
    try:
        raw.script = [[b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure"]] * 2
        insecure = HttpTransport(f"https://127.0.0.1:{raw.port}", tls_verify=False)
        assert insecure.request("GET", "/").body == b"secure"
        assert insecure.request("GET", "/").body == b"secure"
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            HttpTransport(f"https://127.0.0.1:{raw.port}").request("GET", "/")
    finally:
        raw.close()


@pytest.fixture
def many_descriptors():
    """This process holds more than 1024 descriptors, so new sockets get numbers above 1023
    (where ``select()`` fails): the soft RLIMIT_NOFILE is raised for the test, then restored."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if hard != resource.RLIM_INFINITY and hard < wanted + 64:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low to hold {wanted} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted + 64), hard))
    held = []
    try:
        while len(held) < wanted:
            held.append(os.open("/dev/null", os.O_RDONLY))
        yield max(held)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_keep_alive_above_descriptor_1023(server, many_descriptors):
    assert many_descriptors > 1024
    answer = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}"
    server.script = [[answer] for _ in range(20)] + [[answer, "close"], [answer]]
    transport = _transport(server)
    try:
        for _ in range(20):
            assert transport.request("POST", "/invoke", body=b"{}").status == 202
        assert transport._local.conn.sock.fileno() > 1023
        assert server.connections == 1  # 20 requests, one kept-alive connection
        # a connection the server closed while idle is still seen as closed (and replaced) there
        assert transport.request("POST", "/invoke", body=b"{}").status == 202
        time.sleep(0.05)
        assert transport.request("POST", "/invoke", body=b"{}").status == 202
        assert server.connections == 2
    finally:
        transport.close()
