"""``python -m loader.psql [--config F] [--set K=V]... [-- PSQL_ARGS]``: psql on the loader's database.

The database of the loader's configuration: the configured server (``database:dsn`` or
``database:host``), or the embedded one in ``database:embedded_datadir``, which is started for
the session and stopped afterwards (stop the loader first: one server per data directory).
Arguments after ``--`` go to psql (e.g. ``-- -c 'SELECT count(*) FROM runs'``). The password,
if configured, goes to psql in its environment, never on its command line. Exit status: psql's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from faasload import cli, embedded_pg, logsetup
from loader import config as loader_config
from loader.storage.database import DatabaseConfiguration, is_configured, open_database


def psql_binary(embedded: bool) -> Path:
    """The embedded server's own psql, or for a configured server the PATH's (else the wheel's)."""
    found = None if embedded else shutil.which("psql")
    return Path(found) if found else embedded_pg.bin_dir() / "psql"


def psql_command(psql: Path, database: DatabaseConfiguration, extra: list[str]) -> tuple[list[str], dict[str, str]]:
    """The psql command line and the environment additions to reach ``database``."""
    if database.dsn:
        return [str(psql), "-d", database.dsn, *extra], {}
    command = [str(psql), "-p", str(database.port), "-U", database.user, "-d", database.database]
    if database.host:
        command[1:1] = ["-h", database.host]
    env = {"PGPASSWORD": database.password} if database.password is not None else {}
    return [*command, *extra], env


def run_psql(section: loader_config.DatabaseSection, extra: list[str]) -> int:
    """Open the section's database (starting the embedded server if it is that) and run psql."""
    opened = open_database(section)
    try:
        command, env = psql_command(psql_binary(not is_configured(section)), opened.config, extra)
        return subprocess.call(command, env={**os.environ, "PAGER": os.environ.get("PAGER", "cat"), **env})
    finally:
        opened.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loader.psql", description=__doc__.split("\n\n")[1].replace("\n", " "))
    cli.add_config_arguments(parser, loader_config.DEFAULT_PATH)
    parser.add_argument("psql_args", nargs=argparse.REMAINDER, metavar="-- PSQL_ARGS",
                        help="arguments passed to psql")
    args = parser.parse_args(argv)
    extra = args.psql_args[1:] if args.psql_args[:1] == ["--"] else args.psql_args

    def body() -> int:
        config = loader_config.load(args.config, cli.parse_overrides(args.overrides))
        logsetup.apply(config.logging, str(args.config))
        return run_psql(config.database, extra)

    return cli.run_main(body, "loader.psql")


if __name__ == "__main__":
    sys.exit(main())
