"""localwhisk over real HTTP with the process backend: invocation semantics and records.

Compared with docs/openwhisk-contract.md: Invoking an action, Activation record, Runtime protocol.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
import zipfile
from pathlib import Path

import pytest
import requests

from tests.slowness import scaled_s

HELLO = """
import os
def main(args):
    print("hello", args.get("name", "World"))
    return {"greeting": "Hello " + args.get("name", "World"), "activation": os.environ["__OW_ACTIVATION_ID"],
            "deadline": os.environ["__OW_DEADLINE"], "action": os.environ["__OW_ACTION_NAME"],
            "storage": os.environ.get("FAASLOAD_STORAGE"), "api_key": os.environ.get("__OW_API_KEY")}
"""
LOG_LINE_RE = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr): .*\Z")


def _auth(key: str) -> tuple[str, str]:
    return tuple(key.split(":", 1))


@pytest.fixture(scope="module")
def user(localwhisk):
    key = localwhisk.create_user(f"invoke-{time.time_ns()}")
    localwhisk.deploy(key, "hello", HELLO, memory_mb=128)
    return key


def _annotations(record: dict) -> dict:
    return {a["key"]: a["value"] for a in record["annotations"]}


def test_blocking_cold_then_warm_records(localwhisk, user):
    first = requests.post(localwhisk.url("actions/hello?blocking=true"), json={"name": "Ada"}, auth=_auth(user),
                          timeout=30)
    assert first.status_code == 200
    record = first.json()
    assert first.headers["x-openwhisk-activation-id"] == record["activationId"]
    assert re.fullmatch(r"[0-9a-f]{32}", record["activationId"])
    assert record["response"] == {"status": "success", "success": True, "size": record["response"]["size"],
                                  "result": record["response"]["result"]}
    result = record["response"]["result"]
    assert result["greeting"] == "Hello Ada"
    assert result["activation"] == record["activationId"]
    assert result["action"].endswith("/hello") and result["action"].startswith("/")
    assert result["api_key"] is None  # provide-api-key: false by default
    assert result["storage"] == str(localwhisk.storage_dir)
    assert int(result["deadline"]) == record["start"] + 60000  # a string of epoch ms (docs/openwhisk-contract.md)
    assert record["response"]["size"] == len(json.dumps(result, ensure_ascii=False)) + 1  # with the newline
    assert record["duration"] == record["end"] - record["start"]
    assert record["publish"] is False and record["version"] == "0.0.1" and record["name"] == "hello"
    annotations = _annotations(record)
    assert set(annotations) == {"path", "kind", "limits", "waitTime", "initTime", "timeout"}
    assert annotations["path"].endswith("/hello") and not annotations["path"].startswith("/")
    assert annotations["kind"] == "python:3.11"
    assert annotations["limits"] == {"timeout": 60000, "memory": 128, "logs": 10, "concurrency": 1}
    assert annotations["initTime"] > 0 and annotations["timeout"] is False
    assert annotations["initTime"] <= record["duration"]
    assert annotations["waitTime"] >= 0
    assert len(record["logs"]) == 1 and LOG_LINE_RE.match(record["logs"][0])
    assert record["logs"][0].endswith(" stdout: hello Ada")

    warm = requests.post(localwhisk.url("actions/hello?blocking=true"), json={}, auth=_auth(user), timeout=30)
    assert warm.status_code == 200
    warm_annotations = _annotations(warm.json())
    assert "initTime" not in warm_annotations
    assert warm.json()["logs"][0].endswith(" stdout: hello World")


def test_blocking_result_only(localwhisk, user):
    response = requests.post(localwhisk.url("actions/hello?blocking=true&result=true"), json={"name": "Bo"},
                             auth=_auth(user), timeout=30)
    assert response.status_code == 200
    assert response.json()["greeting"] == "Hello Bo"
    assert "x-openwhisk-activation-id" in response.headers


def test_non_blocking_then_record(localwhisk, user):
    response = requests.post(localwhisk.url("actions/hello"), json={}, auth=_auth(user), timeout=30)
    assert response.status_code == 202
    activation_id = response.json()["activationId"]
    assert response.json() == {"activationId": activation_id}
    assert response.headers["x-openwhisk-activation-id"] == activation_id
    deadline = time.monotonic() + 30
    while True:
        got = requests.get(localwhisk.url(f"activations/{activation_id}"), auth=_auth(user), timeout=10)
        if got.status_code == 200 or time.monotonic() > deadline:
            break
        assert got.status_code == 404
        assert got.json()["error"] == "The requested resource does not exist."
        time.sleep(0.01)
    assert got.status_code == 200 and got.json()["activationId"] == activation_id
    result = requests.get(localwhisk.url(f"activations/{activation_id}/result"), auth=_auth(user), timeout=10)
    assert result.json() == got.json()["response"]
    logs = requests.get(localwhisk.url(f"activations/{activation_id}/logs"), auth=_auth(user), timeout=10)
    assert logs.json() == {"logs": got.json()["logs"]}


def test_application_error_is_502(localwhisk, user):
    localwhisk.deploy(user, "fails", "def main(args):\n    raise ValueError('boom')\n")
    response = requests.post(localwhisk.url("actions/fails?blocking=true"), auth=_auth(user), timeout=30)
    assert response.status_code == 502
    assert response.json()["response"]["status"] == "application error"
    assert response.json()["response"]["success"] is False
    assert response.json()["response"]["result"] == {"error": "boom"}
    assert any("ValueError: boom" in line for line in response.json()["logs"])
    only = requests.post(localwhisk.url("actions/fails?blocking=true&result=true"), auth=_auth(user), timeout=30)
    assert only.status_code == 502 and only.json() == {"error": "boom"}


def test_scalar_result_is_developer_error_and_array_is_bare(localwhisk, user):
    localwhisk.deploy(user, "scalar", "def main(args):\n    return 'text'\n")
    response = requests.post(localwhisk.url("actions/scalar?blocking=true"), auth=_auth(user), timeout=30)
    assert response.status_code == 502
    assert response.json()["response"]["status"] == "action developer error"
    assert response.json()["response"]["result"] == {"error": "The action did not return a dictionary or array."}
    localwhisk.deploy(user, "array", "def main(args):\n    return [1, 2]\n")
    response = requests.post(localwhisk.url("actions/array?blocking=true"), auth=_auth(user), timeout=30)
    assert response.status_code == 200 and response.json() == [1, 2]


def test_zip_action_with_main_module(localwhisk, user):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("__main__.py", "from helper import twice\ndef main(args):\n    return {'v': twice(21)}\n")
        archive.writestr("helper.py", "def twice(x):\n    return 2 * x\n")
    code = base64.b64encode(buffer.getvalue()).decode()
    action = localwhisk.deploy(user, "zipped", code)
    assert action["exec"]["binary"] is True
    response = requests.post(localwhisk.url("actions/zipped?blocking=true&result=true"), auth=_auth(user), timeout=30)
    assert response.status_code == 200 and response.json() == {"v": 42}


def test_timeout_is_reported_and_container_replaced(localwhisk, user):
    localwhisk.deploy(user, "sleepy", "import time\ndef main(args):\n    time.sleep(args.get('s', 0))\n    return {}\n",
                      timeout_ms=300)
    response = requests.post(localwhisk.url("actions/sleepy?blocking=true"), json={"s": 5}, auth=_auth(user),
                             timeout=30)
    assert response.status_code == 502
    record = response.json()
    assert record["response"]["status"] == "action developer error"
    assert record["response"]["result"] == {"error": "The action exceeded its time limits of 300 milliseconds."}
    assert _annotations(record)["timeout"] is True
    assert 300 <= record["end"] - record["start"] - _annotations(record)["initTime"] < 5000
    again = requests.post(localwhisk.url("actions/sleepy?blocking=true"), json={"s": 0}, auth=_auth(user), timeout=30)
    assert again.status_code == 200
    assert "initTime" in _annotations(again.json())  # the timed-out container was destroyed: cold again


@pytest.mark.vm
def test_memory_exhaustion_is_developer_error(localwhisk, user):
    from tests import cgroup_helpers
    if cgroup_helpers.unavailable_reason():
        pytest.skip(cgroup_helpers.unavailable_reason())
    code = "def main(args):\n    hog = []\n    while True:\n        hog.append(bytearray(16 * 1024 * 1024))\n"
    localwhisk.deploy(user, "hog", code, memory_mb=128, timeout_ms=20000)
    started = time.monotonic()
    response = requests.post(localwhisk.url("actions/hog?blocking=true"), auth=_auth(user), timeout=60)
    assert response.status_code == 502
    assert response.json()["response"]["status"] == "action developer error"
    assert response.json()["response"]["result"] == {"error": "The action exhausted its memory and was aborted."}
    assert _annotations(response.json())["timeout"] is False
    assert time.monotonic() - started < scaled_s(20)  # ended by the OOM kill, not by the action timeout


def test_blocking_wait_expiry_gives_202(localwhisk, user):
    localwhisk.deploy(user, "slow", "import time\ndef main(args):\n    time.sleep(1.5)\n    return {'done': True}\n")
    response = requests.post(localwhisk.url("actions/slow?blocking=true&timeout=200"), auth=_auth(user), timeout=30)
    assert response.status_code == 202
    activation_id = response.json()["activationId"]
    assert response.json() == {"activationId": activation_id}
    assert response.headers["x-openwhisk-activation-id"] == activation_id
    deadline = time.monotonic() + 30
    while requests.get(localwhisk.url(f"activations/{activation_id}"), auth=_auth(user),
                       timeout=10).status_code == 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    record = requests.get(localwhisk.url(f"activations/{activation_id}"), auth=_auth(user), timeout=10).json()
    assert record["response"]["result"] == {"done": True}


def _proxies_of(pid: int) -> list[int]:
    """Pids of runtime proxies started by the localwhisk process ``pid`` (process backend)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--parent-pid" in argv and argv[argv.index(b"--parent-pid") + 1] == str(pid).encode():
                found.append(int(entry.name))
    return found


def _wait_gone(pids: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(Path(f"/proc/{p}").exists() for p in pids):
        assert time.monotonic() < deadline, f"processes {pids} still alive"
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_no_container_outlives_localwhisk(localwhisk_factory, how):
    whisk = localwhisk_factory.start()
    key = whisk.create_user("outlive")
    whisk.deploy(key, "busy", "import time\ndef main(args):\n    time.sleep(60)\n    return {}\n")
    assert requests.post(whisk.url("actions/busy"), auth=_auth(key), timeout=10).status_code == 202
    deadline = time.monotonic() + 20
    while not _proxies_of(whisk.pid):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proxies = _proxies_of(whisk.pid)
    if how == "stop":
        whisk.stop()  # SIGTERM: busy containers are removed too
        _wait_gone(proxies, 10)
    else:
        whisk.process.kill()  # SIGKILL: the proxies notice their parent is gone
        whisk.process.wait(10)
        _wait_gone(proxies, 10)
