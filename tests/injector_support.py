"""Shared by the injector's end-to-end tests: a trace directory, a loader config, the loader as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import requests
import yaml

from loader.platform.keys import store_key

ROOT = Path(__file__).resolve().parent.parent

#: A FaaSLoad-style action: echoes its parameters, reports an output size and E/T/L times.
ECHO_ACTION = '''
import time
def main(args):
    if args.get("fail") == "yes":
        return {"error": "asked to fail on " + args.get("object", "?")}
    time.sleep(float(args.get("sleep_s", "0")))
    return {"outputsize": 1000 + len(args.get("object", "")), "params": args,
            "times": {"extract": 1.25, "transform": float(args.get("sleep_s", "0")) * 1000, "load": 0.5}}
'''


@dataclass
class Setup:
    """A loader configuration against localwhisk, a broker and a database, with its traces and keys."""

    root: Path
    localwhisk: object
    database: object
    bootstrap: str
    overrides: dict = field(default_factory=dict)
    users: dict = field(default_factory=dict)

    @property
    def tracedir(self) -> Path:
        return self.root / "traces"

    @property
    def authkeys(self) -> Path:
        return self.root / "authkeys"

    @property
    def config_path(self) -> Path:
        return self.root / "loader.yml"

    def user(self, name: str, actions: dict[str, str]) -> str:
        """Create ``name`` on localwhisk, store its key, deploy ``actions`` (name -> code)."""
        auth = self.localwhisk.create_user(name)
        store_key(self.authkeys, name, auth)
        for action, code in actions.items():
            self.localwhisk.deploy(auth, action, code)
        self.users[name] = auth
        return auth

    def trace(self, name: str, lines: list[str]) -> Path:
        self.tracedir.mkdir(exist_ok=True)
        path = self.tracedir / name
        path.write_text("".join(line + "\n" for line in lines))
        return path

    def write_config(self, **sections) -> Path:
        db = self.database
        config = {
            "openwhisk": {"apihost": self.localwhisk.apihost, "authkeys": str(self.authkeys),
                          "user_events": {"bootstrap_servers": [self.bootstrap]}},
            "injection": {"tracedir": str(self.tracedir), "workers": 4, "progress_interval_s": 1.0},
            "completion": {"event_timeout_s": 2.0, "poll_interval_s": 0.5, "final_deadline_s": 60.0, "fetches_in_flight": 2},
            "database": {"host": db.host, "port": db.port, "user": db.user, "database": db.database,
                         "retry_interval_s": 0.2, "flush_interval_s": 0.05},
            "monitor": {"enabled": False},
            "statedir": str(self.root / "state"),
        }
        for section, values in sections.items():
            config.setdefault(section, {}).update(values)
        self.tracedir.mkdir(exist_ok=True)
        self.authkeys.mkdir(exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config))
        return self.config_path

    def start_loader(self, *args: str) -> LoaderProcess:
        return LoaderProcess(self.root, [sys.executable, "-m", "loader", "--config", str(self.config_path), *args])

    def run_loader(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        process = self.start_loader(*args)
        code = process.wait(timeout_s)
        return subprocess.CompletedProcess(process.args, code, process.stdout_text(), process.stderr_text())

    def connect(self):
        return self.database.connect()

    def query(self, sql: str, params=()) -> list[tuple]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params or None)
                return cur.fetchall()
        finally:
            conn.close()

    def count_runs(self, where: str = "TRUE") -> int:
        try:
            return self.query(f"SELECT count(*) FROM runs WHERE {where}")[0][0]
        except (psycopg2.Error, Exception):  # the database may be down during fault tests
            return -1

    def activation(self, user: str, activation_id: str) -> dict:
        response = requests.get(f"{self.localwhisk.apihost}/api/v1/namespaces/_/activations/{activation_id}",
                                auth=tuple(self.users[user].split(":", 1)), timeout=10)
        response.raise_for_status()
        return response.json()

    def activation_count(self, user: str) -> int:
        response = requests.get(f"{self.localwhisk.apihost}/api/v1/namespaces/_/activations",
                                params={"count": "true"}, auth=tuple(self.users[user].split(":", 1)), timeout=10)
        response.raise_for_status()
        return response.json()["activations"]


class LoaderProcess:
    """``python -m loader`` as a child process, output in files."""

    def __init__(self, root: Path, args: list[str]):
        self.args = args
        self.out_path, self.err_path = root / "loader.out", root / "loader.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                            env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"loader did not finish in {timeout_s} s:\n{self.stderr_text()[-3000:]}")

    def signal(self, number=signal.SIGTERM) -> None:
        self.process.send_signal(number)

    def stdout_text(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr_text(self) -> str:
        return self.err_path.read_text(errors="replace")


def wait_for(condition, *, timeout_s: float, what: str, poll_s: float = 0.05):
    """Poll ``condition()`` until truthy (returns its value); fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
