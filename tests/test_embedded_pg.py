"""The embedded PostgreSQL is reachable only through a UNIX socket in a 0700 directory
(issue 16, item 14): no TCP listener, no trust over TCP, and another local user cannot connect.
Runs a real cluster from the pip-installed binaries."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg2
import pytest

from faasload import embedded_pg
from loader.storage.database import DatabaseConfiguration


@pytest.fixture(scope="module")
def cluster():
    scratch = Path(tempfile.mkdtemp(prefix="faasload-pgtest-", dir="/tmp"))
    scratch.chmod(0o755)  # the service user must reach its data directory
    server = embedded_pg.start_cluster(scratch / "pgdata", durable=False)
    yield server
    server.stop(mode="immediate")
    shutil.rmtree(scratch, ignore_errors=True)


def test_listens_on_a_unix_socket_in_a_private_directory(cluster):
    directory = Path(cluster.host)
    assert directory.is_absolute() and directory.is_dir(), f"host {cluster.host!r} is not a socket directory"
    info = directory.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700
    owner = embedded_pg.service_user()
    assert info.st_uid == (owner.pw_uid if owner else os.geteuid())
    assert stat.S_ISSOCK((directory / f".s.PGSQL.{cluster.port}").stat().st_mode)
    conn = DatabaseConfiguration(user=cluster.user, host=cluster.host, port=cluster.port, database="postgres").connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone()[0] == ""
            cur.execute("SHOW unix_socket_permissions")
            assert cur.fetchone()[0] == "0700"
            cur.execute("SELECT type, auth_method FROM pg_hba_file_rules WHERE type <> 'local'")
            assert all(method != "trust" for _, method in cur.fetchall())
    finally:
        conn.close()


def test_no_tcp_listener(cluster):
    for host in ("127.0.0.1", "::1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            assert probe.connect_ex((host, cluster.port)) != 0, f"something listens on {host}:{cluster.port}"
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(host="127.0.0.1", port=cluster.port, user=cluster.user, dbname="postgres", connect_timeout=2)
    with open("/proc/net/tcp") as tcp4, open("/proc/net/tcp6") as tcp6:
        listening = [line.split()[1] for line in (tcp4.readlines()[1:] + tcp6.readlines()[1:])
                     if line.split()[3] == "0A"]  # state LISTEN
    assert not any(address.endswith(f":{cluster.port:04X}") for address in listening)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another local user")
def test_another_local_user_cannot_connect(cluster):
    try:
        stranger = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    psql = embedded_pg.bin_dir() / "psql"
    env = {"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "3"}
    attempts = {
        "socket": [str(psql), "-h", cluster.host, "-p", str(cluster.port), "-U", "postgres", "-d", "postgres",
                   "-Atc", "select 1"],
        "tcp": [str(psql), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-d", "postgres",
                "-Atc", "select 1"],
    }
    for how, command in attempts.items():
        result = subprocess.run(command, user=stranger.pw_uid, group=stranger.pw_gid, env=env, capture_output=True,
                                text=True, timeout=30, cwd="/")
        assert result.returncode != 0 and result.stdout.strip() != "1", f"user nobody connected by {how}"


def test_a_data_directory_too_long_for_a_socket_gets_a_private_one_under_tmp():
    scratch = Path(tempfile.mkdtemp(prefix="faasload-pgtest-", dir="/tmp"))
    scratch.chmod(0o755)
    deep = scratch / ("d" * 60) / ("e" * 60)
    deep.parent.mkdir()
    deep.parent.chmod(0o755)
    server = embedded_pg.start_cluster(deep / "pgdata", durable=False)
    try:
        directory = Path(server.host)
        assert directory.parent == Path("/tmp") and directory.name.startswith("faasload-pg-")
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        conn = psycopg2.connect(host=server.host, port=server.port, user=server.user, dbname="postgres")
        conn.close()
    finally:
        server.stop(mode="fast")
        shutil.rmtree(scratch, ignore_errors=True)
    assert not directory.exists()
