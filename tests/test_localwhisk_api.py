"""REST contract of localwhisk over real HTTP, every endpoint and error path.

Status codes, error texts and JSON fields are OpenWhisk's (docs/openwhisk-contract.md, REST API).
"""

from __future__ import annotations

import base64
import http.client
import re
import time
import urllib.parse

import pytest
import requests

GUEST = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
TID_RE = re.compile(r"\A[A-Za-z0-9]{32}\Z")
ECHO = "def main(args):\n    return {'args': args}\n"


def _auth(key: str) -> tuple[str, str]:
    return tuple(key.split(":", 1))


def _assert_error(response: requests.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body == {"error": text, "code": response.headers["X-Request-ID"]}
    assert TID_RE.match(body["code"])


@pytest.fixture(scope="module")
def user(localwhisk):
    return localwhisk.create_user(f"apiuser-{time.time_ns()}")


# --------------------------------------------------------------------------- unauthenticated routes

def test_info_routes(localwhisk):
    root = requests.get(localwhisk.apihost + "/", timeout=10)
    assert root.status_code == 200 and root.headers["Content-Type"] == "application/json"
    info = root.json()
    assert info["api_paths"] == ["/api/v1"]
    limits = info["limits"]
    assert limits["min_action_memory"] == 128 * 1024 * 1024 and limits["max_action_memory"] == 512 * 1024 * 1024
    assert limits["min_action_duration"] == 100 and limits["max_action_duration"] == 300000
    assert limits["actions_per_minute"] > 0 and limits["concurrent_actions"] > 0
    kinds = {r["kind"]: r for r in info["runtimes"]["python"]}
    assert set(kinds) == {"python:3.10", "python:3.11"} and kinds["python:3.10"]["default"] is True
    assert TID_RE.match(root.headers["X-Request-ID"])
    ping = requests.get(localwhisk.apihost + "/ping", timeout=10)
    assert ping.status_code == 200 and ping.text == "pong"
    api = requests.get(localwhisk.apihost + "/api/v1", timeout=10).json()
    assert api["description"] == "OpenWhisk API" and api["api_version"] == "1.0.0" and api["api_version_path"] == "v1"
    assert api["swagger_paths"] == {"ui": "/docs", "api-docs": "/api-docs"}


def test_unknown_route_and_method(localwhisk, user):
    _assert_error(requests.get(localwhisk.apihost + "/api/v1/nothing", timeout=10), 404,
                  "The requested resource could not be found.")
    response = requests.patch(localwhisk.url("actions/x"), auth=_auth(user), timeout=10)
    assert response.status_code == 405 and "GET" in response.headers["Allow"]


# --------------------------------------------------------------------------- authentication

def test_missing_credentials_401(localwhisk):
    response = requests.get(localwhisk.apihost + "/api/v1/namespaces", timeout=10)
    _assert_error(response, 401, "The resource requires authentication, which was not supplied with the request")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="OpenWhisk secure realm"'


@pytest.mark.parametrize("credential", [
    GUEST[:-1],                 # 63-character secret
    GUEST + "x",                # 65-character secret
    GUEST.split(":")[0] + ":" + "A" * 64,  # right length, wrong secret
    "nobody:" + GUEST.split(":")[1],       # unknown uuid
])
def test_bad_credentials_401(localwhisk, credential):
    response = requests.get(localwhisk.apihost + "/api/v1/namespaces", auth=_auth(credential), timeout=10)
    _assert_error(response, 401, "The supplied authentication is invalid")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="OpenWhisk secure realm"'


def test_namespaces_and_guest_key(localwhisk, user):
    assert requests.get(localwhisk.apihost + "/api/v1/namespaces", auth=_auth(GUEST), timeout=10).json() == ["guest"]
    own = requests.get(localwhisk.apihost + "/api/v1/namespaces", auth=_auth(user), timeout=10).json()
    assert own == [own[0]] and own[0].startswith("apiuser-")


def test_other_namespace_403(localwhisk, user):
    _assert_error(requests.get(localwhisk.apihost + "/api/v1/namespaces/guest/actions/x", auth=_auth(user),
                               timeout=10), 403, "The supplied authentication is not authorized to access 'guest/x'.")
    own = requests.get(localwhisk.apihost + "/api/v1/namespaces", auth=_auth(user), timeout=10).json()[0]
    explicit = requests.get(localwhisk.apihost + f"/api/v1/namespaces/{own}/actions", auth=_auth(user), timeout=10)
    assert explicit.status_code == 200


def test_keep_alive_and_request_ids(localwhisk, user):
    parts = urllib.parse.urlsplit(localwhisk.apihost)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    token = base64.b64encode(user.encode()).decode()
    ids = set()
    for _ in range(3):  # three requests on one connection
        conn.request("GET", "/api/v1/namespaces", headers={"Authorization": f"Basic {token}"})
        response = conn.getresponse()
        assert response.status == 200
        response.read()
        ids.add(response.getheader("X-Request-ID"))
    conn.close()
    assert len(ids) == 3 and all(TID_RE.match(i) for i in ids)


# --------------------------------------------------------------------------- actions

def test_action_create_get_update_delete(localwhisk, user):
    url = localwhisk.url("actions/crud")
    created = requests.put(url, json={"exec": {"kind": "python:3.11", "code": ECHO},
                                      "parameters": [{"key": "p", "value": 1}]}, auth=_auth(user), timeout=10)
    assert created.status_code == 200
    action = created.json()
    assert action["version"] == "0.0.1" and action["publish"] is False and action["name"] == "crud"
    assert action["limits"] == {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
    assert action["exec"] == {"kind": "python:3.11", "code": ECHO, "binary": False}
    assert {"key": "exec", "value": "python:3.11"} in action["annotations"]
    assert {"key": "provide-api-key", "value": False} in action["annotations"]
    assert action["parameters"] == [{"key": "p", "value": 1}]
    _assert_error(requests.put(url, json={"exec": {"kind": "python:3.11", "code": ECHO}}, auth=_auth(user),
                               timeout=10), 409, "resource already exists")
    updated = requests.put(url + "?overwrite=true", json={"limits": {"memory": 128}}, auth=_auth(user), timeout=10)
    assert updated.status_code == 200
    assert updated.json()["version"] == "0.0.2"
    assert updated.json()["limits"] == {"timeout": 60000, "memory": 128, "logs": 10, "concurrency": 1}
    assert updated.json()["exec"]["code"] == ECHO and updated.json()["parameters"] == [{"key": "p", "value": 1}]
    got = requests.get(url, auth=_auth(user), timeout=10).json()
    assert got["version"] == "0.0.2" and got["exec"]["code"] == ECHO
    assert "code" not in requests.get(url + "?code=false", auth=_auth(user), timeout=10).json()["exec"]
    invoked = requests.post(localwhisk.url("actions/crud?blocking=true&result=true"), json={"q": 2},
                            auth=_auth(user), timeout=30)
    assert invoked.json() == {"args": {"p": 1, "q": 2}}  # action parameters, then the payload
    deleted = requests.delete(url, auth=_auth(user), timeout=10)
    assert deleted.status_code == 200 and deleted.json()["name"] == "crud"
    _assert_error(requests.get(url, auth=_auth(user), timeout=10), 404, "The requested resource does not exist.")
    _assert_error(requests.delete(url, auth=_auth(user), timeout=10), 404, "The requested resource does not exist.")


@pytest.mark.parametrize("body,text", [
    ({}, "exec undefined"),
    ({"exec": {"kind": "nodejs:20", "code": ECHO}},
     "The specified runtime 'nodejs:20' is not supported by this platform. "
     "Valid values are: python:3.10, python:3.11, python:default."),
    ({"exec": {"kind": "python:3.11", "code": ECHO}, "limits": {"memory": 1024}},
     "memory size 1024 MB exceeds allowed threshold of 512 MB"),
    ({"exec": {"kind": "python:3.11", "code": ECHO}, "limits": {"memory": 64}},
     "memory size 64 MB below allowed threshold of 128 MB"),
    ({"exec": {"kind": "python:3.11", "code": ECHO}, "limits": {"timeout": 600000}},
     "duration 600000 milliseconds exceeds allowed threshold of 300000 milliseconds"),
    ({"exec": {"kind": "python:3.11", "code": ECHO}, "limits": {"timeout": 50}},
     "duration 50 milliseconds below allowed threshold of 100 milliseconds"),
    ({"exec": {"kind": "python:3.11", "code": ECHO}, "limits": {"concurrency": 2}},
     "concurrency 2 exceeds allowed threshold of 1"),
    ({"exec": {"kind": "python:3.11", "code": ECHO}, "limits": {"logs": 20}},
     "log size 20 MB exceeds allowed threshold of 10 MB"),
])
def test_action_put_rejections(localwhisk, user, body, text):
    _assert_error(requests.put(localwhisk.url("actions/rejected"), json=body, auth=_auth(user), timeout=10), 400, text)
    assert requests.get(localwhisk.url("actions/rejected"), auth=_auth(user), timeout=10).status_code == 404


def test_action_name_and_body_errors(localwhisk, user):
    _assert_error(requests.put(localwhisk.url("actions/bad%21name"), json={"exec": {"kind": "python:3.11",
                                                                                   "code": ECHO}},
                               auth=_auth(user), timeout=10), 400, "The name of the entity contains illegal characters.")
    response = requests.put(localwhisk.url("actions/badjson"), data=b"{not json", auth=_auth(user), timeout=10,
                            headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("The request content was malformed:")


def test_python_default_kind(localwhisk, user):
    response = requests.put(localwhisk.url("actions/dflt"), json={"exec": {"kind": "python:default", "code": ECHO}},
                            auth=_auth(user), timeout=10)
    assert response.status_code == 200 and response.json()["exec"]["kind"] == "python:3.10"


def test_action_list_skip_limit_count(localwhisk):
    key = localwhisk.create_user(f"lister-{time.time_ns()}")
    for name in ("a1", "a2", "a3"):
        localwhisk.deploy(key, name, ECHO)
        time.sleep(0.002)  # distinct `updated` times
    listed = requests.get(localwhisk.url("actions"), auth=_auth(key), timeout=10).json()
    assert [a["name"] for a in listed] == ["a3", "a2", "a1"]  # newest first
    assert set(listed[0]) == {"namespace", "name", "version", "publish", "annotations", "limits", "exec", "updated"}
    assert listed[0]["exec"] == {"binary": False}
    page = requests.get(localwhisk.url("actions?skip=1&limit=1"), auth=_auth(key), timeout=10).json()
    assert [a["name"] for a in page] == ["a2"]
    assert requests.get(localwhisk.url("actions?count=true"), auth=_auth(key), timeout=10).json() == {"actions": 3}
    _assert_error(requests.get(localwhisk.url("actions?limit=201"), auth=_auth(key), timeout=10), 400,
                  "The value '201' is not in the range of 0 to 200 for actions.")
    _assert_error(requests.get(localwhisk.url("actions?skip=-1"), auth=_auth(key), timeout=10), 400,
                  "The value '-1' is not greater than or equal to 0 for actions.")


# --------------------------------------------------------------------------- invoke errors

@pytest.mark.parametrize("timeout", ["0", "60001", "abc", "-5"])
def test_invoke_bad_timeout_400(localwhisk, user, timeout):
    localwhisk.deploy(user, "echo", ECHO)
    _assert_error(requests.post(localwhisk.url(f"actions/echo?blocking=true&timeout={timeout}"), auth=_auth(user),
                                timeout=10), 400, "Timeout must be number of milliseconds up to 60000.")


def test_invoke_missing_action_404_and_non_object_body(localwhisk, user):
    _assert_error(requests.post(localwhisk.url("actions/missing"), auth=_auth(user), timeout=10), 404,
                  "The requested resource does not exist.")
    localwhisk.deploy(user, "echo", ECHO)
    response = requests.post(localwhisk.url("actions/echo"), json=[1, 2], auth=_auth(user), timeout=10)
    assert response.status_code == 400 and response.json()["error"].startswith("The request content was malformed:")


def test_invoke_empty_body_is_empty_object(localwhisk, user):
    localwhisk.deploy(user, "echo", ECHO)
    response = requests.post(localwhisk.url("actions/echo?blocking=true&result=true"), auth=_auth(user), timeout=30)
    assert response.status_code == 200 and response.json() == {"args": {}}


# --------------------------------------------------------------------------- activations

def test_activation_errors(localwhisk, user):
    _assert_error(requests.get(localwhisk.url("activations/not-an-id"), auth=_auth(user), timeout=10), 400,
                  "The activation id is not valid.")
    _assert_error(requests.get(localwhisk.url("activations/" + "0" * 32), auth=_auth(user), timeout=10), 404,
                  "The requested resource does not exist.")
    _assert_error(requests.get(localwhisk.url("activations?docs=true&count=true"), auth=_auth(user), timeout=10),
                  400, "The parameter 'docs' is not permitted with 'count'.")
    _assert_error(requests.get(localwhisk.url("activations?since=yesterday"), auth=_auth(user), timeout=10), 400,
                  "Parameter is not a valid value for epoch seconds: yesterday")
    _assert_error(requests.get(localwhisk.url("activations?limit=500"), auth=_auth(user), timeout=10), 400,
                  "The value '500' is not in the range of 0 to 200 for activations.")
    _assert_error(requests.get(localwhisk.url("activations?name=a/b/c"), auth=_auth(user), timeout=10), 400,
                  "Parameter may be a 'simple' name or 'package-name/simple' name: a/b/c")


def test_activation_list_filters_and_shapes(localwhisk):
    key = localwhisk.create_user(f"acts-{time.time_ns()}")
    localwhisk.deploy(key, "one", ECHO)
    localwhisk.deploy(key, "two", ECHO)
    records = []
    for name in ("one", "two", "one"):
        response = requests.post(localwhisk.url(f"actions/{name}?blocking=true"), auth=_auth(key), timeout=30)
        records.append(response.json())
        time.sleep(0.002)
    summary = requests.get(localwhisk.url("activations"), auth=_auth(key), timeout=10).json()
    assert [s["activationId"] for s in summary] == [r["activationId"] for r in reversed(records)]  # newest first
    assert set(summary[0]) == {"namespace", "name", "version", "publish", "annotations", "activationId", "start",
                               "end", "duration", "statusCode"}
    assert summary[0]["statusCode"] == 0
    docs = requests.get(localwhisk.url("activations?docs=true&limit=1"), auth=_auth(key), timeout=10).json()
    assert len(docs) == 1 and docs[0] == records[2]
    named = requests.get(localwhisk.url("activations?name=one"), auth=_auth(key), timeout=10).json()
    assert [s["name"] for s in named] == ["one", "one"]
    assert requests.get(localwhisk.url("activations?count=true"), auth=_auth(key), timeout=10).json() == \
        {"activations": 3}
    since = records[1]["start"]
    window = requests.get(localwhisk.url(f"activations?since={since}&upto={records[2]['start']}"), auth=_auth(key),
                          timeout=10).json()
    assert [s["activationId"] for s in window] == [records[2]["activationId"], records[1]["activationId"]]
    skipped = requests.get(localwhisk.url("activations?skip=2"), auth=_auth(key), timeout=10).json()
    assert [s["activationId"] for s in skipped] == [records[0]["activationId"]]


def test_activation_of_another_namespace_is_404(localwhisk, user):
    other = localwhisk.create_user(f"other-{time.time_ns()}")
    localwhisk.deploy(other, "echo", ECHO)
    record = requests.post(localwhisk.url("actions/echo?blocking=true"), auth=_auth(other), timeout=30).json()
    _assert_error(requests.get(localwhisk.url(f"activations/{record['activationId']}"), auth=_auth(user), timeout=10),
                  404, "The requested resource does not exist.")


# --------------------------------------------------------------------------- throttling

def test_per_minute_limit_429_counts_rejections(localwhisk_factory):
    whisk = localwhisk_factory.start(actions_per_minute=3)
    key = whisk.create_user("throttled")
    whisk.deploy(key, "echo", ECHO)
    # align to the start of a calendar minute window with room for 5 requests
    while time.time() % 60 > 55:
        time.sleep(0.2)
    statuses = [requests.post(whisk.url("actions/echo"), auth=_auth(key), timeout=10) for _ in range(5)]
    assert [r.status_code for r in statuses] == [202, 202, 202, 429, 429]
    _assert_error(statuses[3], 429, "Too many requests in the last minute (count: 4, allowed: 3).")
    _assert_error(statuses[4], 429, "Too many requests in the last minute (count: 5, allowed: 3).")
    # the check comes before the action lookup: a missing action also gets 429
    _assert_error(requests.post(whisk.url("actions/missing"), auth=_auth(key), timeout=10), 429,
                  "Too many requests in the last minute (count: 6, allowed: 3).")
    # a per-namespace override (wskadmin limits set) raises the limit on the running server
    done = whisk.admin("limits", "set", "throttled", "--invocationsPerMinute", "100")
    assert done.returncode == 0, done.stderr
    assert requests.post(whisk.url("actions/echo"), auth=_auth(key), timeout=10).status_code == 202
    limits = requests.get(whisk.url("limits"), auth=_auth(key), timeout=10).json()
    assert limits["invocationsPerMinute"] == 100


def test_concurrent_limit_429(localwhisk_factory):
    whisk = localwhisk_factory.start(concurrent_actions=1)
    key = whisk.create_user("concurrent")
    whisk.deploy(key, "slow", "import time\ndef main(args):\n    time.sleep(1)\n    return {}\n")
    first = requests.post(whisk.url("actions/slow"), auth=_auth(key), timeout=10)
    assert first.status_code == 202
    second = requests.post(whisk.url("actions/slow"), auth=_auth(key), timeout=10)
    _assert_error(second, 429, "Too many concurrent requests in flight (count: 1, allowed: 1).")
    activation_id = first.json()["activationId"]
    deadline = time.monotonic() + 30
    while requests.get(whisk.url(f"activations/{activation_id}"), auth=_auth(key), timeout=10).status_code == 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert requests.post(whisk.url("actions/slow"), auth=_auth(key), timeout=10).status_code == 202
