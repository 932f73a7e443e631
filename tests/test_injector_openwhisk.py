"""The REST client against a real HTTP server on a free port: outcomes, retries, auth, paths."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from faasload.procs import free_tcp_port
from loader.platform.client import FetchStatus, InvokeStatus, OpenWhiskClient
from loader.platform.keys import UserKey

USER = UserKey("alice", "23bc46b1-71f6-4ed5-8c54-816aa4f8c502", "secretkey")


class Scripted(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, self.headers.get("Authorization"), body))
        status, payload, *drop = self.server.script.pop(0) if self.server.script else (500, {"error": "no script"})
        if status is None:  # read the request, then close without answering (an idle close racing it)
            self.close_connection = True
            return
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if drop:  # close the kept-alive connection without saying so (an idle timeout on the server)
            self.close_connection = True

    do_GET = do_POST = _answer


class ScriptedServer(ThreadingHTTPServer):
    """Counts the connections it closed, so a test can wait until a drop has happened."""

    def __init__(self, *args):
        super().__init__(*args)
        self.closed = threading.Semaphore(0)

    def shutdown_request(self, request):
        super().shutdown_request(request)
        self.closed.release()


@pytest.fixture
def server():
    httpd = ScriptedServer(("127.0.0.1", 0), Scripted)
    httpd.script, httpd.requests = [], []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _client(server, **kwargs):
    return OpenWhiskClient(f"http://127.0.0.1:{server.server_address[1]}", sleep=lambda s: None, **kwargs)


def test_invoke_posts_non_blocking_with_basic_auth_and_json_params(server):
    server.script = [(202, {"activationId": "a" * 32})]
    outcome = _client(server).invoke(USER, "pkg/re size", {"object": "1.jpg", "n": "3"})
    assert (outcome.status, outcome.activation_id, outcome.http_status, outcome.attempts) == \
        (InvokeStatus.ACCEPTED, "a" * 32, 202, 1)
    method, path, auth, body = server.requests[0]
    assert (method, path) == ("POST", "/api/v1/namespaces/_/actions/pkg/re%20size?blocking=false")
    assert auth == "Basic " + base64.b64encode(f"{USER.uuid}:{USER.key}".encode()).decode()
    assert json.loads(body) == {"object": "1.jpg", "n": "3"}


def test_429_and_errors_are_typed_and_not_retried_by_default(server):
    server.script = [(429, {"error": "Too many requests in the last minute (count: 61, allowed: 60).", "code": "x"}),
                     (404, {"error": "The requested resource does not exist.", "code": "y"})]
    client = _client(server)
    throttled = client.invoke(USER, "a", {})
    assert (throttled.status, throttled.http_status, throttled.attempts) == (InvokeStatus.THROTTLED, 429, 1)
    assert throttled.reason == "HTTP 429: Too many requests in the last minute (count: 61, allowed: 60)."
    missing = client.invoke(USER, "a", {})
    assert (missing.status, missing.reason) == (InvokeStatus.HTTP_ERROR, "HTTP 404: The requested resource does not exist.")


def test_retries_429_and_5xx_when_configured_and_counts_attempts(server):
    server.script = [(429, {"error": "t"}), (503, {"error": "lb"}), (202, {"activationId": "b" * 32})]
    outcome = _client(server, invoke_retries=3).invoke(USER, "a", {})
    assert (outcome.status, outcome.attempts, outcome.activation_id) == (InvokeStatus.ACCEPTED, 3, "b" * 32)
    server.script = [(429, {"error": "t"}), (429, {"error": "t"})]
    outcome = _client(server, invoke_retries=1).invoke(USER, "a", {})
    assert (outcome.status, outcome.attempts) == (InvokeStatus.THROTTLED, 2)


def test_connection_error_is_an_outcome():
    client = OpenWhiskClient(f"http://127.0.0.1:{free_tcp_port()}", timeout_s=2.0)
    outcome = client.invoke(USER, "a", {})
    assert outcome.status is InvokeStatus.CONNECTION_ERROR
    assert outcome.reason == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_get_activation_found_not_found_and_error(server):
    server.script = [(404, {"error": "The requested resource does not exist."}), (200, {"activationId": "c" * 32}),
                     (401, {"error": "The supplied authentication is invalid"})]
    client = _client(server)
    assert client.get_activation(USER, "c" * 32).status is FetchStatus.NOT_FOUND
    found = client.get_activation(USER, "c" * 32)
    assert (found.status, found.record) == (FetchStatus.FOUND, {"activationId": "c" * 32})
    error = client.get_action(USER, "a")
    assert (error.status, error.http_status) == (FetchStatus.ERROR, 401)
    assert [r[1] for r in server.requests] == [f"/api/v1/namespaces/_/activations/{'c' * 32}"] * 2 + \
        ["/api/v1/namespaces/_/actions/a?code=false"]


def test_keep_alive_connection_survives_the_server_closing_it(server):
    """An idle connection the server closed is replaced, not reported as an error."""
    client = _client(server)
    server.script = [(202, {"activationId": "a" * 32}, "drop"), (202, {"activationId": "b" * 32})]
    assert client.invoke(USER, "a", {}).activation_id == "a" * 32
    assert server.closed.acquire(timeout=10)  # the connection is idle and closed by the server
    assert client.invoke(USER, "a", {}).activation_id == "b" * 32
    assert len(server.requests) == 2


def test_a_close_racing_a_reused_connection_retries_only_idempotent_requests(server):
    """GET is sent again on a new connection; an invoke (POST) is a connection error, never sent twice."""
    client = _client(server)
    server.script = [(200, {"activationId": "c" * 32}), (None, None), (200, {"activationId": "d" * 32})]
    assert client.get_activation(USER, "c" * 32).record == {"activationId": "c" * 32}
    found = client.get_activation(USER, "d" * 32)
    assert (found.status, found.record) == (FetchStatus.FOUND, {"activationId": "d" * 32})
    assert [r[0] for r in server.requests] == ["GET"] * 3
    server.script = [(202, {"activationId": "a" * 32}), (None, None), (202, {"activationId": "b" * 32})]
    assert client.invoke(USER, "a", {}).activation_id == "a" * 32
    lost = client.invoke(USER, "a", {})
    assert (lost.status, lost.activation_id) == (InvokeStatus.CONNECTION_ERROR, None)
    assert lost.reason == "RemoteDisconnected: Remote end closed connection without response"
    assert [r[0] for r in server.requests[3:]] == ["POST", "POST"]
