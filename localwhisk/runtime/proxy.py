"""The in-container runtime proxy: OpenWhisk's action protocol (docs/openwhisk-contract.md) over HTTP.

Run as ``/usr/bin/python3 proxy.py --port-file FILE`` (standard library only: it runs
under the system Python inside containers). It listens on a free localhost port and
writes it to FILE, or with ``--socket PATH`` on a UNIX socket (Docker containers, which
have no network), then serves ``POST /init`` and ``POST /run`` like the ActionLoop proxy:

* ``/init`` unpacks the code (source text, or a base64 zip with ``__main__.py``) and starts
  one long-lived child (``launcher.py``) that acknowledges on its answer pipe;
* ``/run`` writes the request as one JSON line to the child's stdin and answers the JSON
  line the child writes on its answer pipe (a JSON object or array; else 502);
* after each activation it writes the sentinel ``XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX``
  to both stdout and stderr (the child's output goes to the same streams).

Connections are kept (HTTP/1.1): localwhisk sends every call of a container on one
connection. Each connection has its own thread, so a connection left open never blocks
another; the calls themselves run one at a time.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.py")


class ActionProcess:
    """The child running the action, with its answer pipe (fd 3 in ActionLoop)."""

    def __init__(self):
        self.child: subprocess.Popen | None = None
        self.answers: io.BufferedReader | None = None
        self.lock = threading.Lock()

    def start(self, workdir: str, main: str, env: dict) -> str | None:
        """Start the child; None when it acknowledged, else an error text."""
        read_fd, write_fd = os.pipe()
        child_env = dict(os.environ)
        child_env.update({str(k): v if isinstance(v, str) else json.dumps(v) for k, v in env.items()})
        self.child = subprocess.Popen(
            [sys.executable, LAUNCHER, workdir, main, str(write_fd)], stdin=subprocess.PIPE, env=child_env,
            cwd=workdir, pass_fds=(write_fd,))
        os.close(write_fd)
        self.answers = os.fdopen(read_fd, "rb")
        ack = self.answers.readline()
        if not ack:
            self.child.wait()
            return "Cannot start action. Check logs for details."
        return None

    def run(self, line: bytes) -> bytes | None:
        """One activation; the answer line, or None when the child exited."""
        child, answers = self.child, self.answers
        if child is None or child.stdin is None or answers is None:
            return None
        try:
            child.stdin.write(line + b"\n")
            child.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        answer = answers.readline()
        return answer or None


ACTION = ActionProcess()


def _unpack(value: dict) -> tuple[str | None, str]:
    """Write the code into a fresh directory; (error text, directory)."""
    workdir = tempfile.mkdtemp(prefix="action-")
    code = value.get("code") or ""
    if value.get("binary"):
        try:
            archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(code)))
            archive.extractall(workdir)
        except (ValueError, zipfile.BadZipFile) as exc:
            return f"Invalid zip file: {exc}", workdir
        if not os.path.exists(os.path.join(workdir, "__main__.py")):
            return "Zip file does not include __main__.py", workdir
        os.rename(os.path.join(workdir, "__main__.py"), os.path.join(workdir, "main__.py"))
    else:
        with open(os.path.join(workdir, "main__.py"), "w", encoding="utf-8") as stream:
            stream.write(code)
    return None, workdir


def _sentinel() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.write(SENTINEL + "\n")
        stream.flush()


def handle_init(body: dict) -> tuple[int, dict]:
    with ACTION.lock:
        return _init(body)


def _init(body: dict) -> tuple[int, dict]:
    if ACTION.child is not None:
        return 403, {"error": "Cannot initialize the action more than once."}
    value = body.get("value") or {}
    if not value.get("code"):
        return 403, {"error": "Missing main/no code to execute."}
    error, workdir = _unpack(value)
    if error:
        return 502, {"error": error}
    error = ACTION.start(workdir, value.get("main") or "main", value.get("env") or {})
    if error:
        ACTION.child = None
        sys.stdout.flush()
        sys.stderr.flush()
        return 502, {"error": error}
    return 200, {"ok": True}


def handle_run(raw: bytes) -> tuple[int, bytes]:
    if ACTION.child is None:
        return 500, b'{"error":"no action defined yet"}\n'
    with ACTION.lock:
        answer = ACTION.run(json.dumps(json.loads(raw or b"{}")).encode())
        _sentinel()
    if answer is None:
        return 400, b'{"error":"command exited"}\n'
    try:
        parsed = json.loads(answer)
    except ValueError:
        parsed = None
    if not isinstance(parsed, (dict, list)):
        return 502, b'{"error":"The action did not return a dictionary or array."}\n'
    return 200, answer if answer.endswith(b"\n") else answer + b"\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):  # the container's output is the action's log
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path == "/init":
            try:
                status, answer = handle_init(json.loads(raw or b"{}"))
            except ValueError:
                status, answer = 400, {"error": "invalid JSON request"}
            self._send(status, (json.dumps(answer) + "\n").encode())
        elif self.path == "/run":
            try:
                status, body = handle_run(raw)
            except ValueError:
                status, body = 400, b'{"error":"invalid JSON request"}\n'
            self._send(status, body)
        else:
            self._send(404, b'{"error":"not found"}\n')

    def _send(self, status: int, body: bytes) -> None:
        head = (f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.wfile.write(head + body)
        self.wfile.flush()


def _watch_parent(parent_pid: int) -> None:
    """Exit (and so end the action child) when the parent that started us died."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


class UnixHandler(Handler):
    disable_nagle_algorithm = False  # no TCP options on a UNIX socket

    def address_string(self) -> str:
        return "unix"


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, handler):
        try:
            os.unlink(path)  # a socket left by an earlier proxy in this directory
        except FileNotFoundError:
            pass
        super().__init__(path, handler)


def main() -> int:
    parser = argparse.ArgumentParser(description="OpenWhisk-style action runtime proxy")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port-file", help="listen on a free TCP port of --host and write it to this file")
    where.add_argument("--socket", help="listen on this UNIX socket instead")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--parent-pid", type=int, default=0,
                        help="exit when this process (localwhisk's process backend) is gone")
    args = parser.parse_args()
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    if args.socket:
        server: socketserver.BaseServer = UnixHTTPServer(args.socket, UnixHandler)
    else:
        server = ThreadingHTTPServer((args.host, 0), Handler)
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as stream:
            stream.write(str(server.server_address[1]))
        os.replace(tmp, args.port_file)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
