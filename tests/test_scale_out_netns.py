"""Scale-out end to end, on one machine as on several (issue 18): 3 loader shards and 2 invokers.

Every loader and every monitor runs in its own network namespace; PostgreSQL, the Kafka-protocol
broker and localwhisk (``invokers: 2``) run in a hub namespace; veth pairs join them on a private
subnet (tests/netns_support.py).  Loaders reach the database, the broker, the API and the
monitors' TCP measurement sockets (with the shared token) over that subnet only.  localwhisk
notifies each invoker's monitor on its own socket.  The test reads the results through the
database's and the monitors' UNIX sockets.

Checked: every planned invocation in exactly one row, completed, its ``invoker`` the action's
home invoker, its samples those of that invoker's monitor (the other monitor does not know the
activation); each loader follows only its own activations among all the events; the shards
started together.  Then a shard killed mid-run: its rows are explained (``lost`` with the shard's
fate, or completed before it died), the others complete, and the aggregate says it is dead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2.errors
import pytest
import yaml

from faasload import embedded_pg, tansu
from faasload.token_file import create_token_file
from loader.cluster.shard import shard_of
from loader.platform.keys import store_key
from loader.storage.database import DatabaseConfiguration, create_database
from localwhisk.invokers import home_invoker
from tests import cgroup_helpers, netns_support
from tests.fixtures.localwhisk import start_localwhisk
from tests.fixtures.monitor import MonitorFactory
from tests.injector_support import ECHO_ACTION, wait_for

pytestmark = [pytest.mark.timeout(600), pytest.mark.root, pytest.mark.cgroups, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SHARDS = 3
INVOKERS = 2
#: The monitors' TCP port: each monitor has a fresh namespace of its own, where every port is free.
MONITOR_PORT = 9300


@dataclass
class Hosts:
    """The services of the test network."""

    net: netns_support.TestNetwork
    root: Path
    pg: embedded_pg.EmbeddedPostgres
    broker: tansu.TansuBroker
    monitors: list
    platform: object
    token_file: Path
    cleanups: list = field(default_factory=list)

    def database(self, name: str) -> DatabaseConfiguration:
        """Through the server's UNIX socket (its data directory): reachable from this namespace."""
        return DatabaseConfiguration(user=self.pg.user, host=self.pg.host, port=self.pg.port, database=name)


@pytest.fixture(scope="module")
def hosts():
    reason = netns_support.unavailable_reason() or cgroup_helpers.unavailable_reason()
    if reason:
        pytest.skip(reason)
    net = netns_support.TestNetwork([f"mon{k}" for k in range(INVOKERS)] + [f"ld{k}" for k in range(1, SHARDS + 1)])
    root = Path(tempfile.mkdtemp(prefix="faasload-netns-", dir="/tmp"))
    root.chmod(0o755)
    stops = []
    try:
        hub_ip = net.addresses["hub"]
        with net.inside("hub"):
            # The embedded server listens on its UNIX socket only (never trust on TCP); network
            # namespaces do not separate the file system, so every "host" reaches it there.
            pg = embedded_pg.EmbeddedPostgres(root / "pgdata")
            pg.init()
            pg.start(durable=False)
            stops.append(lambda: pg.stop(mode="immediate"))
            broker = tansu.start(root / "tansu", host=hub_ip)
            stops.append(broker.stop)
        token_file = create_token_file(root / "monitor-token")
        factory = MonitorFactory()
        stops.append(factory.cleanup)
        monitors = []
        for k in range(INVOKERS):
            with net.inside(f"mon{k}"):
                monitors.append(factory.start(
                    sockets={"measurement_tcp": f"{net.addresses[f'mon{k}']}:{MONITOR_PORT}",
                             "token_file": str(token_file)},
                    docker={"enabled": False}, discovery={"docker": False},
                    logging={"root": {"level": "INFO"}}))
        with net.inside("hub"):
            platform = start_localwhisk(
                root / "localwhisk", backend="process", kafka_bootstrap=broker.bootstrap,
                settings={"server:host": hub_ip, "server:instance": 0, "invokers": INVOKERS,
                          "monitor:notification_sockets": {f"invoker{k}": str(m.notification_socket)
                                                           for k, m in enumerate(monitors)}})
        stops.append(platform.stop)
        yield Hosts(net, root, pg, broker, monitors, platform, token_file)
    finally:
        for stop in reversed(stops):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 (stop the others anyway)
                print(f"cleanup failed: {exc}")
        net.remove()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Run:
    """One sharded experiment: its users (by shard), traces, configurations and loader processes."""

    hosts: Hosts
    directory: Path
    database: DatabaseConfiguration
    name: str
    users: dict[str, tuple[int, int]] = field(default_factory=dict)   # user -> (shard, home invoker)
    planned: dict[str, int] = field(default_factory=dict)             # trace -> invocations
    processes: dict[int, subprocess.Popen] = field(default_factory=dict)

    def query(self, sql: str, params=()) -> list[tuple]:
        conn = self.database.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params or None)
                return cur.fetchall()
        finally:
            conn.close()


def _choose_users(tag: str) -> dict[str, tuple[int, int]]:
    """Per shard, one user whose action runs on invoker0 and one on invoker1."""
    slots: dict[tuple[int, int], str] = {}
    for n in range(10_000):
        user = f"{tag}u{n}"
        slot = (shard_of(user, SHARDS), home_invoker(user, f"{user}/echo", INVOKERS))
        slots.setdefault(slot, user)
        if len(slots) == SHARDS * INVOKERS:
            return {user: slot for slot, user in slots.items()}
    raise AssertionError("could not place a user on every (shard, invoker)")


def _prepare(hosts: Hosts, *, invocations: dict[int, int], interval_s: float) -> Run:
    tag = uuid.uuid4().hex[:6]
    directory = hosts.root / f"run-{tag}"
    (directory / "traces").mkdir(parents=True)
    name = f"db_{tag}"
    create_database(hosts.database("postgres"), name)
    run = Run(hosts, directory, hosts.database(name), f"scale-out-{tag}", users=_choose_users(tag))
    for user, (shard, _) in run.users.items():
        auth = hosts.platform.create_user(user)
        store_key(directory / "authkeys", user, auth)
        with hosts.net.inside("hub"):
            hosts.platform.deploy(auth, "echo", ECHO_ACTION, memory_mb=128)
        count = invocations[shard]
        (directory / "traces" / f"{user}-echo").write_text(
            "".join(f"{interval_s}\t{i}.jpg\tsleep_s:0.05\n" for i in range(count)))
        run.planned[f"{user}-echo"] = count
    return run


def _start_shards(run: Run) -> None:
    net = run.hosts.net
    apihost = run.hosts.platform.apihost
    for shard in range(1, SHARDS + 1):
        config = {
            "openwhisk": {"apihost": apihost, "authkeys": str(run.directory / "authkeys"),
                          "user_events": {"bootstrap_servers": [run.hosts.broker.bootstrap]}},
            "injection": {"tracedir": str(run.directory / "traces"), "workers": 4, "sender_processes": 0,
                          "progress_interval_s": 2.0},
            # events are expected: polling starts late, so a broker slowed by a loaded machine
            # does not race its own events (a row then lacks the event's count in "matched")
            "completion": {"event_timeout_s": 30.0, "poll_interval_s": 0.5, "final_deadline_s": 60.0, "fetches_in_flight": 2},
            "database": {"host": run.hosts.pg.host, "port": run.hosts.pg.port, "user": run.hosts.pg.user,
                         "database": run.database.database, "flush_interval_s": 0.05, "retry_interval_s": 0.2},
            "monitor": {"enabled": True, "timeout_s": 3.0, "token_file": str(run.hosts.token_file),
                        "endpoints": {f"invoker{k}": f"tcp://{net.addresses[f'mon{k}']}:{MONITOR_PORT}"
                                      for k in range(INVOKERS)}},
            "experiment": {"name": run.name},
            "cluster": {"host": f"ld{shard}", "start_delay_s": 4.0, "heartbeat_interval_s": 0.5,
                        "dead_after_s": 3.0, "join_timeout_s": 120.0},
            "statedir": str(run.directory / f"state{shard}"),
        }
        path = run.directory / f"loader{shard}.yml"
        path.write_text(yaml.safe_dump(config))
        with net.inside(f"ld{shard}"), open(run.directory / f"loader{shard}.out", "wb") as out, \
                open(run.directory / f"loader{shard}.err", "wb") as err:
            run.processes[shard] = subprocess.Popen(
                [sys.executable, "-m", "loader", "--config", str(path), "--shard", f"{shard}/{SHARDS}"],
                cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
                env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _wait(run: Run, shard: int, timeout_s: float = 240) -> int:
    process = run.processes[shard]
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"shard {shard} did not finish:\n{_text(run, shard, 'err')[-3000:]}") from None


def _text(run: Run, shard: int, stream: str) -> str:
    return (run.directory / f"loader{shard}.{stream}").read_text(errors="replace")


def _stop_all(run: Run) -> None:
    for process in run.processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _check_resources_came_from_the_right_monitor(run: Run, rows) -> None:
    monitors = run.hosts.monitors
    for trace, seq, activation, invoker, resources_status in rows:
        user = trace.rsplit("-", 1)[0]
        home = run.users[user][1]
        assert invoker == f"invoker{home}", (trace, seq, invoker)
        if resources_status != "ok":  # what the row says, and what the monitor answers now
            ((reason,),) = run.query("SELECT resources_reason FROM runs WHERE activation_id = %s", (activation,))
            now = monitors[home].query({"activation": activation})
            raise AssertionError(f"{trace} #{seq}: resources {resources_status} ({reason}); "
                                 f"its monitor now answers {now.get('code', 'ok')} {now.get('error', '')}")
        stored = {r[0] for r in run.query("SELECT s.sampled_at_us FROM resources s JOIN runs r USING (run_id) "
                                          "WHERE r.activation_id = %s", (activation,))}
        answer = monitors[home].query({"activation": activation})
        expected = {round(s["date"] * 1_000_000) for s in answer["samples"]}
        # the same samples; or, when the loader asked before the monitor had the end notice, up to
        # the record's end rounded up to its millisecond: then at most one more trailing sample
        extra = stored - expected
        assert stored and expected <= stored and (not extra or (len(extra) == 1 and min(extra) > max(expected))), (
            trace, seq, sorted(stored), sorted(expected))
        assert monitors[1 - home].query({"activation": activation})["code"] == "unknown_activation"


def test_three_shards_two_invokers_every_invocation_once_with_its_monitor(hosts):
    run = _prepare(hosts, invocations={1: 8, 2: 8, 3: 8}, interval_s=0.2)
    try:
        _start_shards(run)
        codes = {shard: _wait(run, shard) for shard in run.processes}
    finally:
        _stop_all(run)
    assert codes == {1: 0, 2: 0, 3: 0}, {s: _text(run, s, "err")[-2000:] for s in codes}
    rows = run.query("SELECT trace_name, seq, status FROM runs ORDER BY trace_name, seq")
    assert [(t, s) for t, s, _ in rows] == [(t, s) for t in sorted(run.planned) for s in range(run.planned[t])]
    assert {status for _, _, status in rows} == {"success"}
    _check_resources_came_from_the_right_monitor(
        run, run.query("SELECT trace_name, seq, activation_id, invoker, resources_status FROM runs"))
    shard_rows = run.query("SELECT shard, host, state, planned, issued, summary->'user_events' FROM shards "
                           "ORDER BY shard")
    assert [(s, h, st, p, i) for s, h, st, p, i, _ in shard_rows] == [
        (k, f"ld{k}", "finished", 16, 16) for k in range(1, SHARDS + 1)]
    for _, _, _, _, issued, events in shard_rows:
        # every loader read every invoker's events, kept its own (all matched) and left the others'
        assert events["matched"] == issued and 0 < events["foreign"] <= 48 - issued, (
            events, [line for line in run.hosts.platform.log_text().splitlines() if "user event" in line])
    summary = run.query("SELECT summary FROM experiments WHERE name = %s", (run.name,))[0][0]
    assert summary["statuses"] == {"success": 48} and summary["planned"] == 48 and summary["not_recorded"] == 0
    assert summary["resources"] == {"ok": 48}
    assert [s["state"] for s in summary["shards"]] == ["finished"] * SHARDS
    assert summary["start_spread_ms"] < 100, summary["start_spread_ms"]   # one clock: the spread of the starts
    for shard in run.processes:
        assert "experiment (every shard):" in _text(run, shard, "out")
        assert "statuses: success 48" in _text(run, shard, "out")
    with hosts.net.inside("ld1"):   # the aggregate on read, from a loader's host
        status = subprocess.run([sys.executable, "-m", "loader.cluster", "status", "--config",
                                 str(run.directory / "loader1.yml")], cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
    assert status.returncode == 0, status.stderr
    assert "statuses: success 48" in status.stdout and "shard 3 on ld3: finished, 16 issued of 16" in status.stdout


def _completed(run: Run, traces: list[str]) -> int:
    try:
        return run.query("SELECT count(*) FROM runs WHERE status = 'success' AND trace_name = ANY(%s)", (traces,))[0][0]
    except psycopg2.errors.UndefinedTable:  # the loaders have not created the schema yet
        return 0


def test_a_shard_killed_mid_run_is_dead_its_rows_explained_the_others_complete(hosts):
    run = _prepare(hosts, invocations={1: 6, 2: 40, 3: 6}, interval_s=0.2)
    victim = 2
    victim_traces = [f"{u}-echo" for u, (shard, _) in run.users.items() if shard == victim]
    try:
        _start_shards(run)
        wait_for(lambda: _completed(run, victim_traces) >= 6, timeout_s=120, what="the victim's first completions")
        os.killpg(run.processes[victim].pid, signal.SIGKILL)   # the loader and its children: a host that died
        run.processes[victim].wait()
        codes = {shard: _wait(run, shard) for shard in run.processes if shard != victim}
    finally:
        _stop_all(run)
    assert codes == {1: 0, 3: 0}, {s: _text(run, s, "err")[-2000:] for s in codes}
    rows = run.query("SELECT trace_name, seq, status, status_reason FROM runs ORDER BY trace_name, seq")
    survivors = [r for r in rows if r[0] not in victim_traces]
    assert [(t, s) for t, s, _, _ in survivors] == [(t, s) for t in sorted(run.planned) if t not in victim_traces
                                                    for s in range(run.planned[t])]
    assert {r[2] for r in survivors} == {"success"}
    _check_resources_came_from_the_right_monitor(
        run, run.query("SELECT trace_name, seq, activation_id, invoker, resources_status FROM runs "
                       "WHERE NOT (trace_name = ANY(%s))", (victim_traces,)))
    victims = [r for r in rows if r[0] in victim_traces]
    assert len(victims) < 80 and {r[2] for r in victims} <= {"success", "lost"}      # nothing left "sent"
    for _, _, status, reason in victims:
        if status == "lost":
            assert reason.startswith(f"shard {victim}/{SHARDS} on ld{victim} stopped heartbeating (dead)"), reason
    summary = run.query("SELECT summary FROM experiments WHERE name = %s", (run.name,))[0][0]
    by_shard = {s["shard"]: s for s in summary["shards"]}
    assert by_shard[victim]["state"] == "dead"
    assert by_shard[victim]["not_recorded"] == 80 - len(victims) > 0
    assert [by_shard[k]["state"] for k in (1, 3)] == ["finished", "finished"]
    assert summary["not_recorded"] == 80 - len(victims)
    assert run.query("SELECT state FROM shards WHERE shard = %s", (victim,)) == [("dead",)]
    final = _text(run, 1, "out") + _text(run, 3, "out")
    assert f"shard {victim} on ld{victim}: dead" in final
    print(json.dumps({k: (s["state"], s["issued"], s["rows"], s["not_recorded"]) for k, s in by_shard.items()}))
