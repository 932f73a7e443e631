"""Docker actions are isolated as OpenWhisk isolates them (issue 16, item 17), with a real Docker
daemon: a non-root user, no capabilities, no new privileges, a pids limit, and no network
unless the action asks for it (annotation ``network: true``). Skipped without a daemon."""

from __future__ import annotations

import os

import pytest
import requests

pytestmark = pytest.mark.docker

#: Reports what the action can see and do from inside its container.
PROBE = r'''
import os, socket
def main(args):
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    host, port = args["apihost"].rsplit("/", 1)[-1].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        reached = True
    except OSError:
        reached = False
    out = {"uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(),
           "cap_eff": status["CapEff"].strip(), "cap_prm": status["CapPrm"].strip(),
           "cap_bnd": status["CapBnd"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
           "interfaces": sorted(name for _, name in socket.if_nameindex()), "reached_apihost": reached}
    target = os.path.join(os.environ["FAASLOAD_STORAGE"], "outputs", "probe.txt")
    try:
        with open(target, "w") as f:
            f.write("written")
        out["wrote_storage"] = True
    except OSError as exc:
        out["wrote_storage"] = str(exc)
    return out
'''


def _auth(key: str) -> tuple[str, str]:
    return tuple(key.split(":", 1))


@pytest.fixture
def docker_api(docker_daemon):
    import docker
    client = docker.APIClient(base_url=docker_daemon)
    yield client
    client.close()


def _container(docker_api, prefix: str, action: str) -> dict:
    found = [c for c in docker_api.containers(all=True)
             if any(n.startswith(f"/{prefix}") and n.endswith(action) for n in c["Names"])]
    assert len(found) == 1, found
    return docker_api.inspect_container(found[0]["Id"])


def test_actions_run_unprivileged_without_network(localwhisk_factory, docker_api):
    whisk = localwhisk_factory.start(backend="docker", settings={"server:instance": 902})
    outputs = whisk.storage_dir / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(outputs, 65534, 65534)  # storage the actions write to belongs to their user (docs/localwhisk.md)
    key = whisk.create_user("isolated-user")
    whisk.deploy(key, "probe", PROBE, memory_mb=128)
    response = requests.post(whisk.url("actions/probe?blocking=true&result=true"), json={"apihost": whisk.apihost},
                             auth=_auth(key), timeout=60)
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["uid"] != 0 and seen["euid"] != 0 and seen["gid"] != 0
    assert int(seen["cap_eff"], 16) == 0 and int(seen["cap_prm"], 16) == 0 and int(seen["cap_bnd"], 16) == 0
    assert seen["no_new_privs"] == "1"
    assert seen["interfaces"] == ["lo"] and seen["reached_apihost"] is False
    assert seen["wrote_storage"] is True
    info = _container(docker_api, "wsk902_", "_probe")
    host_config = info["HostConfig"]
    assert host_config["NetworkMode"] == "none"
    assert host_config["CapDrop"] == ["ALL"] and not host_config["CapAdd"]
    assert any(opt.startswith("no-new-privileges") for opt in host_config["SecurityOpt"])
    assert host_config["PidsLimit"] == 1024 and host_config["Privileged"] is False
    assert info["Config"]["User"] not in ("", "0", "root", "0:0")


def test_an_action_asking_for_network_gets_the_configured_one(localwhisk_factory, docker_api):
    whisk = localwhisk_factory.start(backend="docker", settings={"server:instance": 903,
                                                                 "containers:docker_network": "host"})
    key = whisk.create_user("networked-user")
    whisk.deploy(key, "probe", PROBE, memory_mb=128, annotations=[{"key": "network", "value": True}])
    response = requests.post(whisk.url("actions/probe?blocking=true&result=true"), json={"apihost": whisk.apihost},
                             auth=_auth(key), timeout=60)
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["reached_apihost"] is True and len(seen["interfaces"]) > 1
    assert seen["uid"] != 0 and int(seen["cap_eff"], 16) == 0  # still unprivileged
    info = _container(docker_api, "wsk903_", "_probe")
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert info["HostConfig"]["CapDrop"] == ["ALL"]
