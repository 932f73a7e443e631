"""Injector setup: create the traces' users, store their keys, deploy actions into their namespaces.

``python -m loader.deploy users`` creates every user the traces name (file
``USER-ACTION-...``) on localwhisk (``python -m localwhisk user create``) and stores
its ``uuid:key`` in ``openwhisk:authkeys``; for a real OpenWhisk it prints the
``wskadmin`` commands and how to store the keys (``--print-wskadmin``).

``python -m loader.deploy actions`` reads a wskdeploy manifest and PUTs each action
(``?overwrite=true``) into the namespace of every user that needs it, with that user's
key: by default the actions each user's traces name, or every manifest action with
``--all``.  Called by ``scripts/create_users.sh`` and ``scripts/deploy_actions.sh``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faasload import cli, resources
from loader import config as loader_config
from loader.injection.traces import list_traces, parse_name
from loader.platform.client import make_client
from loader.platform.deploy import DeployError, create_localwhisk_user, deploy_action, run_command
from loader.platform.keys import KeyFileError, load_key, store_key


def trace_users(tracedir: Path) -> dict[str, set[str]]:
    """user -> the actions its traces invoke."""
    paths, _ = list_traces(tracedir)
    users: dict[str, set[str]] = {}
    for path in paths:
        name = parse_name(path)
        users.setdefault(name.user, set()).add(name.action)
    return users


def wskadmin_instructions(users: list[str], authkeys: Path) -> str:
    lines = ["# On a real OpenWhisk, as its administrator (wskadmin is in openwhisk/tools/admin):"]
    for user in users:
        lines.append(f"wskadmin user create {user}   # prints UUID:KEY")
    lines.append(f"# then store each key for the loader (file {authkeys}/USER holding UUID:KEY):")
    for user in users:
        lines.append(f"python -m loader.deploy store-key {user} UUID:KEY --config CONFIG")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line

def _users(args, config) -> int:
    users = sorted(trace_users(config.injection.tracedir)) if not args.user else sorted(set(args.user))
    if not users:
        raise DeployError(f"no user: no trace in {config.injection.tracedir} and no --user")
    if args.print_wskadmin:
        print(wskadmin_instructions(users, config.openwhisk.authkeys))
        return cli.EXIT_OK
    for user in users:
        try:
            load_key(config.openwhisk.authkeys, user)
            print(f"{user}: key already in {config.openwhisk.authkeys} (kept)")
            continue
        except KeyFileError:
            pass
        path = store_key(config.openwhisk.authkeys, user, create_localwhisk_user(user, args.localwhisk_arg))
        print(f"{user}: created on localwhisk, key stored in {path}")
    return cli.EXIT_OK


def _actions(args, config) -> int:
    from loader.manifest import read_functions
    rows = {row.name: row for row in read_functions(args.manifest)}
    wanted = {user: set(rows) for user in args.user} if args.user else trace_users(config.injection.tracedir)
    if args.all:
        wanted = {user: set(rows) for user in wanted}
    ow = config.openwhisk
    client = make_client(ow)
    for user, actions in sorted(wanted.items()):
        key = load_key(ow.authkeys, user)
        missing = sorted(actions - set(rows))
        if missing:
            raise DeployError(f"user {user!r}: action(s) {', '.join(missing)} not in {args.manifest}")
        for action in sorted(actions):
            deploy_action(client, key, rows[action])
            print(f"{user}: deployed {action} ({rows[action].runtime or 'blackbox'})")
    return cli.EXIT_OK


def _store_key(args, config) -> int:
    print(f"{args.user_name}: key stored in {store_key(config.openwhisk.authkeys, args.user_name, args.credentials)}")
    return cli.EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loader.deploy", description=__doc__.split("\n\n")[0])
    cli.add_config_arguments(parser, loader_config.DEFAULT_PATH)
    commands = parser.add_subparsers(dest="command", required=True)
    users = commands.add_parser("users", help="create the traces' users and store their keys")
    users.add_argument("--user", action="append", default=[], help="this user instead of the traces' (repeatable)")
    users.add_argument("--print-wskadmin", action="store_true",
                       help="print the commands for a real OpenWhisk instead of creating users on localwhisk")
    users.add_argument("--localwhisk-arg", action="append", default=[], metavar="ARG",
                       help="argument passed to `python -m localwhisk` before `user create` (e.g. --config=FILE)")
    users.set_defaults(handler=_users)
    actions = commands.add_parser("actions", help="deploy manifest actions into each user's namespace")
    actions.add_argument("--manifest", type=Path, default=resources.example_actions_manifest())
    actions.add_argument("--user", action="append", default=[], help="deploy every manifest action for this user")
    actions.add_argument("--all", action="store_true", help="deploy every manifest action for each trace user")
    actions.set_defaults(handler=_actions)
    key = commands.add_parser("store-key", help="store a user's uuid:key in openwhisk:authkeys")
    key.add_argument("user_name", metavar="USER")
    key.add_argument("credentials", metavar="UUID:KEY")
    key.set_defaults(handler=_store_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, "loader.deploy")


if __name__ == "__main__":
    sys.exit(main())
