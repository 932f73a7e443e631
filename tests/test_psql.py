"""python -m loader.psql: psql on the loader's database, the embedded one (started for the session
and stopped) or a configured server (the password only in psql's environment)."""

import subprocess
import sys
from pathlib import Path

import yaml

from loader.psql import psql_command
from loader.storage.database import DatabaseConfiguration

PSQL = Path("/opt/pg/bin/psql")


def test_command_line_of_a_configured_server_keeps_the_password_out_of_argv():
    config = DatabaseConfiguration(user="fl", password="s3cret", database="d", host="db.example", port=6543)
    command, env = psql_command(PSQL, config, ["-c", "SELECT 1"])
    assert command == [str(PSQL), "-h", "db.example", "-p", "6543", "-U", "fl", "-d", "d", "-c", "SELECT 1"]
    assert env == {"PGPASSWORD": "s3cret"} and "s3cret" not in " ".join(command)
    dsn, dsn_env = psql_command(PSQL, DatabaseConfiguration(dsn="postgresql://fl@db/d"), [])
    assert dsn == [str(PSQL), "-d", "postgresql://fl@db/d"] and dsn_env == {}


def test_opens_the_embedded_database_of_a_configuration_given_relative(scratch_root, tmp_path):
    """From another directory, with a relative --config: the embedded server is started, psql runs
    the query, the server is stopped again."""
    datadir = scratch_root / "psql-pgdata"
    (tmp_path / "my-loader.yml").write_text(yaml.safe_dump({"database": {"embedded_datadir": str(datadir)}}))
    result = subprocess.run([sys.executable, "-m", "loader.psql", "--config", "my-loader.yml", "--",
                             "-At", "-c", "SELECT current_database() || ' ' || (SELECT count(*) FROM pg_database)"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "faasload"
    assert not (datadir / "postmaster.pid").exists()  # stopped afterwards
    assert f"starting an embedded PostgreSQL server in {datadir}" in result.stderr


def test_psql_exit_status_is_returned(scratch_root, tmp_path):
    datadir = scratch_root / "psql-pgdata-2"
    (tmp_path / "l.yml").write_text(yaml.safe_dump({"database": {"embedded_datadir": str(datadir)}}))
    result = subprocess.run([sys.executable, "-m", "loader.psql", "--config", "l.yml", "--", "-v", "ON_ERROR_STOP=1",
                             "-c", "SELECT * FROM no_such_table"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert 'relation "no_such_table" does not exist' in result.stderr
