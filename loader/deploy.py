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
import base64
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from faasload import cli, resources

from . import config as loader_config
from .authkeys import KeyFileError, UserKey, load_key, store_key
from .openwhisk import OpenWhiskClient, action_path
from .records import FunctionRow
from .traces import list_traces, parse_name


class DeployError(RuntimeError):
    """A user or an action could not be set up; the message says which and why."""


def trace_users(tracedir: Path) -> dict[str, set[str]]:
    """user -> the actions its traces invoke."""
    paths, _ = list_traces(tracedir)
    users: dict[str, set[str]] = {}
    for path in paths:
        name = parse_name(path)
        users.setdefault(name.user, set()).add(name.action)
    return users


def create_localwhisk_user(user: str, localwhisk_args: list[str]) -> str:
    """``python -m localwhisk [ARGS] user create USER``; the ``uuid:key`` it prints."""
    command = [sys.executable, "-m", "localwhisk", *localwhisk_args, "user", "create", user]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise DeployError(f"creating user {user!r} on localwhisk failed: "
                          f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().splitlines()[-1].strip()


def wskadmin_instructions(users: list[str], authkeys: Path) -> str:
    lines = ["# On a real OpenWhisk, as its administrator (wskadmin is in openwhisk/tools/admin):"]
    for user in users:
        lines.append(f"wskadmin user create {user}   # prints UUID:KEY")
    lines.append(f"# then store each key for the loader (file {authkeys}/USER holding UUID:KEY):")
    for user in users:
        lines.append(f"python -m loader.deploy store-key {user} UUID:KEY --config CONFIG")
    return "\n".join(lines)


def action_body(row: FunctionRow) -> dict:
    """The PUT body of a manifest action (exec and limits)."""
    if row.image:
        exec_ = {"kind": "blackbox", "image": row.image}
    else:
        if not row.code_path:
            raise DeployError(f"action {row.name!r}: no code file and no image in {row.manifest_path}")
        path = Path(row.code_path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DeployError(f"action {row.name!r}: cannot read {path}: {exc.strerror or exc}") from None
        code = base64.b64encode(data).decode() if path.suffix in (".zip", ".jar") else data.decode("utf-8")
        exec_ = {"kind": row.runtime or "python:default", "code": code}
        if row.main:
            exec_["main"] = row.main
    limits = {k: v for k, v in (("memory", row.memory_mb), ("timeout", row.timeout_ms), ("logs", row.log_size_mb),
                                ("concurrency", row.concurrency)) if v is not None}
    body = {"exec": exec_}
    if limits:
        body["limits"] = limits
    return body


def deploy_action(client: OpenWhiskClient, user: UserKey, row: FunctionRow) -> None:
    """PUT the action (and its package) into ``user``'s namespace, overwriting."""
    def put(path: str, body: dict) -> None:
        status, error = client.put(user, path, body)
        if status != 200:
            raise DeployError(f"user {user.user!r}: PUT {path} failed: {error}")
    name = f"{row.package}/{row.name}" if row.package else row.name
    if row.package:
        put(f"/packages/{quote(row.package, safe='')}", {})
    put(f"/actions/{action_path(name)}", action_body(row))


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
    from .functions import read_functions
    rows = {row.name: row for row in read_functions(args.manifest)}
    wanted = {user: set(rows) for user in args.user} if args.user else trace_users(config.injection.tracedir)
    if args.all:
        wanted = {user: set(rows) for user in wanted}
    ow = config.openwhisk
    client = OpenWhiskClient(ow.apihost, tls_verify=ow.tls_verify, timeout_s=ow.request_timeout_s)
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


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None, program: str) -> int:
    """Parse, load the loader configuration, run the chosen sub-command's handler (also loader.gendeploy)."""
    args = parser.parse_args(argv)

    def body() -> int:
        config = loader_config.load(args.config, cli.parse_overrides(args.overrides))
        return args.handler(args, config)

    return cli.run_main(body, program)


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, "loader.deploy")


if __name__ == "__main__":
    sys.exit(main())
