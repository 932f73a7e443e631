"""Injector setup: users and keys, actions per user (scripts against localwhisk), and the
durability callbacks the modes rely on (the systemd units: tests/test_units.py)."""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from loader.plan import PlannedInvocation
from loader.platform.keys import KeyFileError, UserKey, load_key, store_key
from loader.storage import experiments
from loader.storage import writer as store
from loader.storage.recorder import DurableSink, Recorder
from loader.storage.rows import RunStatus
from loader.storage.summary import RunStats

ROOT = Path(__file__).resolve().parent.parent
#: The scripts run FaaSLoad with this interpreter (theirs is the .venv's by default).
SCRIPT_ENV = {**os.environ, "FAASLOAD_PYTHON": sys.executable}


def _config(tmp_path, apihost):
    path = tmp_path / "loader.yml"
    path.write_text(yaml.safe_dump({"openwhisk": {"apihost": apihost, "authkeys": str(tmp_path / "keys")},
                                    "injection": {"tracedir": str(tmp_path / "traces")}}))
    (tmp_path / "traces").mkdir()
    return path


def test_scripts_create_users_and_deploy_their_actions(tmp_path, localwhisk):
    """Run from another directory, with paths relative to it (--config, --set, --localwhisk-arg)."""
    user = f"setup{uuid.uuid4().hex[:6]}"
    config = _config(tmp_path, "http://127.0.0.1:1")  # the API host comes with --set
    (tmp_path / "traces" / f"{user}-image_resize-256").write_text("1\t1.jpg\n")
    (tmp_path / "traces" / f"{user}-audio_gain").write_text("1\t1.wav\n")
    shutil.copy(localwhisk.config_path, tmp_path / "localwhisk.yml")
    relative = ["--config", config.name, "--set", f"openwhisk:apihost={localwhisk.apihost}",
                "--set=injection:tracedir=traces"]
    created = subprocess.run([str(ROOT / "scripts" / "create_users.sh"), *relative,
                              "--localwhisk-arg=--config=localwhisk.yml"],
                             cwd=tmp_path, env=SCRIPT_ENV, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"{user}: created on localwhisk, key stored in {tmp_path / 'keys' / user}"
    key = load_key(tmp_path / "keys", user)
    assert (tmp_path / "keys" / user).stat().st_mode & 0o777 == 0o600
    again = subprocess.run([str(ROOT / "scripts" / "create_users.sh"), *relative], cwd=tmp_path, env=SCRIPT_ENV,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "key already in" in again.stdout

    deployed = subprocess.run([str(ROOT / "scripts" / "deploy_actions.sh"), *relative], cwd=tmp_path,
                              env=SCRIPT_ENV, capture_output=True, text=True, timeout=120)
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.splitlines() == [f"{user}: deployed audio_gain (python:3.11)",
                                            f"{user}: deployed image_resize (python:3.11)"]
    action = requests.get(f"{localwhisk.apihost}/api/v1/namespaces/_/actions/image_resize", auth=key.auth,
                          timeout=10).json()
    manifest_code = (ROOT / "actions" / "image_resize.py").read_text()
    assert (action["exec"]["kind"], action["exec"]["code"], action["limits"]["memory"]) == \
        ("python:3.11", manifest_code, 256)
    assert requests.get(f"{localwhisk.apihost}/api/v1/namespaces/_/actions/video_filter", auth=key.auth,
                        timeout=10).status_code == 404


def test_print_wskadmin_for_a_real_openwhisk(tmp_path):
    config = _config(tmp_path, "https://ow.example:443")
    (tmp_path / "traces" / "alice-resize").write_text("")
    out = subprocess.run(["scripts/create_users.sh", "--config", str(config), "--print-wskadmin"], cwd=ROOT,
                         env=SCRIPT_ENV, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "wskadmin user create alice" in out.stdout
    assert "python -m loader.deploy store-key alice UUID:KEY --config CONFIG" in out.stdout
    assert not (tmp_path / "keys").exists()


def test_bad_key_files_are_named(tmp_path):
    with pytest.raises(KeyFileError, match=rf"{tmp_path}/bob: no key file for user 'bob'"):
        load_key(tmp_path, "bob")
    (tmp_path / "bob").write_text("not-a-key\n")
    with pytest.raises(KeyFileError, match=rf"{tmp_path}/bob: key file of user 'bob' does not hold 'uuid:key'"):
        load_key(tmp_path, "bob")
    with pytest.raises(KeyFileError, match="does not hold 'uuid:key'"):
        store_key(tmp_path, "carol", "nope")


def test_on_stored_fires_only_once_the_terminal_row_is_committed(database):
    conn = experiments.open_store(database)
    experiment_id = experiments.ensure_experiment(conn, name="durable", mode="injection")
    writer = store.StoreWriter(database, flush_interval_s=0.01).start()
    stored = []
    sink = DurableSink(writer)
    recorder = Recorder(sink, experiment_id, RunStats(10_000), on_stored=lambda inv, status: stored.append(
        (inv.seq, status, _committed(conn, experiment_id, inv.seq))))
    invocations = [PlannedInvocation("t", seq, "u", "a", seq, None, (("k", "v"),)) for seq in range(3)]
    for invocation in invocations:
        recorder.dispatched()
        recorder.cancelled(invocation, "stopped", dispatched=True)
    writer.flush()
    sink.fire()
    writer.close()
    assert stored == [(0, RunStatus.CANCELLED, "cancelled"), (1, RunStatus.CANCELLED, "cancelled"),
                      (2, RunStatus.CANCELLED, "cancelled")]
    assert recorder.outstanding == 0


def _committed(conn, experiment_id, seq):
    with conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE experiment_id = %s AND seq = %s", (experiment_id, seq))
        row = cur.fetchone()
    conn.commit()
    return row[0] if row else None


def test_manifest_inputs_are_the_deployed_actions_default_parameters(tmp_path, localwhisk):
    """wskdeploy's ``inputs`` reach the platform as the action's ``parameters``; an invocation's
    own parameters override them (OpenWhisk's merge)."""
    from loader.manifest import read_functions
    from loader.platform.client import OpenWhiskClient
    from loader.platform.deploy import deploy_action

    (tmp_path / "echo.py").write_text("def main(args):\n    return args\n")
    manifest = tmp_path / "manifest.yml"
    manifest.write_text("packages:\n  default:\n    actions:\n      echo:\n        function: echo.py\n"
                        "        runtime: python:3.11\n        inputs: {greeting: hello, times: {value: 2}}\n")
    (row,) = read_functions(manifest)
    user = f"inputs{uuid.uuid4().hex[:6]}"
    uuid_part, key_part = localwhisk.create_user(user).split(":", 1)
    client = OpenWhiskClient(localwhisk.apihost)
    try:
        deploy_action(client, UserKey(user, uuid_part, key_part), row)
    finally:
        client.close()
    auth = (uuid_part, key_part)
    action = requests.get(localwhisk.url("actions/echo"), auth=auth, timeout=10).json()
    assert action["parameters"] == [{"key": "greeting", "value": "hello"}, {"key": "times", "value": 2}]
    answer = requests.post(localwhisk.url("actions/echo?blocking=true&result=true"), json={"times": 5},
                           auth=auth, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"greeting": "hello", "times": 5}
