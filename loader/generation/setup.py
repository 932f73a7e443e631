"""Generator setup: one user per function, each with its own action (docs/generator.md).

``python -m loader.gendeploy users`` reads the ``functions`` table and creates user
``user-<function>`` for each function on the platform, storing its ``uuid:key`` in
``openwhisk:authkeys`` (file named after the user): on localwhisk with
``python -m localwhisk user create``, on a real OpenWhisk with ``wskadmin user create``
(``--platform openwhisk``, run where ``wskadmin`` works).  Users whose key file exists
are kept.

``python -m loader.gendeploy actions`` PUTs each function (``?overwrite=true``, its code
from the manifest's ``function`` path, its runtime and limits) into its user's
namespace with that user's key.

``scripts/generator_create_users.sh`` and ``scripts/generator_deploy_actions.sh`` call
these.  The REST calls and the key files are the injector setup's (:mod:`loader.injection.setup`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from faasload import cli
from loader import config as loader_config
from loader.platform.client import make_client
from loader.platform.deploy import DeployError, create_localwhisk_user, deploy_action, run_command
from loader.platform.keys import KeyFileError, load_key, store_key
from loader.storage import experiments
from loader.storage.database import open_database
from loader.storage.experiments import fetch_functions
from loader.storage.rows import FunctionRow

PLATFORMS = ("localwhisk", "openwhisk")


def user_of(function: str) -> str:
    return f"user-{function}"


def read_functions_table(config) -> list[FunctionRow]:
    opened = open_database(config.database)
    try:
        conn = experiments.open_store(opened.config)
        try:
            rows = fetch_functions(conn)
        finally:
            conn.close()
    finally:
        opened.close()
    if not rows:
        raise DeployError(f"the functions table of {opened.config.describe()} is empty: fill it first "
                          f"(python -m loader.functions actions/manifest.yml)")
    return rows


def create_wskadmin_user(user: str, wskadmin: str) -> str:
    """``wskadmin user create USER``; the ``uuid:key`` it prints."""
    try:
        result = subprocess.run([wskadmin, "user", "create", user], capture_output=True, text=True)
    except OSError as exc:
        raise DeployError(f"cannot run {wskadmin!r} ({exc.strerror or exc}): run this where OpenWhisk's "
                          f"wskadmin works, or give its path with --wskadmin") from None
    if result.returncode != 0:
        raise DeployError(f"creating user {user!r} with wskadmin failed: "
                          f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().splitlines()[-1].strip()


def _users(args, config) -> int:
    authkeys = config.openwhisk.authkeys
    for row in read_functions_table(config):
        user = user_of(row.name)
        try:
            load_key(authkeys, user)
            print(f"{user}: key already in {authkeys} (kept)")
            continue
        except KeyFileError:
            pass
        if args.platform == "localwhisk":
            credentials = create_localwhisk_user(user, args.localwhisk_arg)
        else:
            credentials = create_wskadmin_user(user, args.wskadmin)
        print(f"{user}: created on {args.platform}, key stored in {store_key(authkeys, user, credentials)}")
    return cli.EXIT_OK


def _actions(args, config) -> int:
    ow = config.openwhisk
    rows = read_functions_table(config)
    keys = {}
    problems = []
    for row in rows:
        try:
            keys[row.name] = load_key(ow.authkeys, user_of(row.name))
        except KeyFileError as exc:
            problems.append(str(exc))
    if problems:
        raise DeployError("; ".join(problems) + " (run scripts/generator_create_users.sh first)")
    client = make_client(ow)
    try:
        for row in rows:
            deploy_action(client, keys[row.name], row)
            print(f"{user_of(row.name)}: deployed {row.name} ({row.runtime or 'blackbox'}) from {row.code_path or row.image}")
    finally:
        client.close()
    return cli.EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loader.gendeploy", description=__doc__.split("\n\n")[0])
    cli.add_config_arguments(parser, loader_config.DEFAULT_PATH)
    commands = parser.add_subparsers(dest="command", required=True)
    users = commands.add_parser("users", help="create user-FUNCTION for every function and store the keys")
    users.add_argument("--platform", choices=PLATFORMS, default="localwhisk",
                       help="localwhisk (python -m localwhisk user create) or openwhisk (wskadmin user create)")
    users.add_argument("--localwhisk-arg", action="append", default=[], metavar="ARG",
                       help="argument passed to `python -m localwhisk` before `user create` (e.g. --config=FILE)")
    users.add_argument("--wskadmin", default="wskadmin", help="path of OpenWhisk's wskadmin (default: wskadmin)")
    users.set_defaults(handler=_users)
    actions = commands.add_parser("actions", help="deploy each function into its user's namespace (REST PUT)")
    actions.set_defaults(handler=_actions)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, "loader.gendeploy")


if __name__ == "__main__":
    sys.exit(main())
