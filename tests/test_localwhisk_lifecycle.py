"""localwhisk's apihost file and its answers to OpenWhisk routes it does not implement
(issue 16, item 13), over real HTTP against ``python -m localwhisk``."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent

TID_RE = re.compile(r"\A[A-Za-z0-9]{32}\Z")


def _auth(key: str) -> tuple[str, str]:
    return tuple(key.split(":", 1))


def test_apihost_written_atomically_and_removed_on_exit(localwhisk_factory):
    whisk = localwhisk_factory.start()
    apihost = whisk.state_dir / "apihost"
    assert apihost.read_text() == whisk.apihost + "\n"
    assert [p.name for p in whisk.state_dir.iterdir() if p.name.startswith("apihost")] == ["apihost"]
    whisk.process.send_signal(signal.SIGTERM)
    assert whisk.process.wait(30) == 0
    assert not apihost.exists(), "a stopped localwhisk left its URL behind"


def test_stale_apihost_is_removed_before_anything_else(tmp_path):
    """A killed instance left its URL: a new one that then fails to start must not leave it readable."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "apihost").write_text("http://127.0.0.1:1\n")
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        config = tmp_path / "localwhisk.yml"
        config.write_text(yaml.safe_dump({"server": {"host": "127.0.0.1", "port": busy.getsockname()[1]},
                                          "state": {"dir": str(state)}, "storage": {"dir": str(tmp_path / "s")},
                                          "containers": {"backend": "process"}}))
        result = subprocess.run([sys.executable, "-m", "localwhisk", "--config", str(config)], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
    finally:
        busy.close()
    assert result.returncode != 0
    assert "Address already in use" in result.stderr
    assert not (state / "apihost").exists()


@pytest.mark.parametrize("method, path, feature", [
    ("GET", "namespaces/_/triggers", "Triggers"),
    ("PUT", "namespaces/_/triggers/t1", "Triggers"),
    ("POST", "namespaces/_/triggers/t1", "Triggers"),
    ("DELETE", "namespaces/_/triggers/t1", "Triggers"),
    ("GET", "namespaces/_/rules", "Rules"),
    ("PUT", "namespaces/_/rules/r1", "Rules"),
    ("POST", "namespaces/_/rules/r1", "Rules"),
    ("GET", "namespaces/_/packages", "Packages"),
    ("PUT", "namespaces/_/packages/p1", "Packages"),
    ("GET", "namespaces/_/packages/p1", "Packages"),
    ("GET", "web/guest/default/hello.json", "Web actions"),
    ("POST", "web/guest/p1/hello.http", "Web actions"),
])
def test_unimplemented_routes_answer_501_naming_the_feature(localwhisk, method, path, feature):
    key = localwhisk.create_user(f"features-{time.time_ns()}")
    response = requests.request(method, f"{localwhisk.apihost}/api/v1/{path}", json={}, auth=_auth(key), timeout=10)
    assert response.status_code == 501, response.text
    body = response.json()
    assert body["code"] == response.headers["X-Request-ID"] and TID_RE.match(body["code"])
    assert body["error"] == f"{feature} are not implemented by localwhisk, which serves actions and activations only."


def test_actions_and_unknown_routes_keep_their_answers(localwhisk):
    key = localwhisk.create_user(f"features-{time.time_ns()}")
    missing = requests.get(localwhisk.apihost + "/api/v1/namespaces/_/actions/pkg/missing", auth=_auth(key), timeout=10)
    assert missing.status_code == 404 and missing.json()["error"] == "The requested resource does not exist."
    unknown = requests.get(localwhisk.apihost + "/api/v1/nothing", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"] == "The requested resource could not be found."
