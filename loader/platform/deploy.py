"""Setting up users and actions on the platform: shared by the injector's and the generator's setup.

A user is created on localwhisk with ``python -m localwhisk user create`` (a real
OpenWhisk's administrator uses ``wskadmin``); an action is PUT with ``?overwrite=true``
into its user's namespace, with that user's key.
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from faasload import cli
from faasload.errors import Failure
from loader import config as loader_config
from loader.platform.client import OpenWhiskClient, action_path
from loader.platform.keys import UserKey
from loader.storage.rows import FunctionRow


class DeployError(Failure):
    """A user or an action could not be set up; the message says which and why."""


def create_localwhisk_user(user: str, localwhisk_args: list[str]) -> str:
    """``python -m localwhisk [ARGS] user create USER``; the ``uuid:key`` it prints."""
    command = [sys.executable, "-m", "localwhisk", *localwhisk_args, "user", "create", user]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise DeployError(f"creating user {user!r} on localwhisk failed: "
                          f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().splitlines()[-1].strip()


def action_body(row: FunctionRow) -> dict:
    """The PUT body of a manifest action (exec, limits, default parameters)."""
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
    body: dict[str, object] = {"exec": exec_}
    if limits:
        body["limits"] = limits
    if row.inputs:
        body["parameters"] = [{"key": name, "value": value} for name, value in row.inputs]
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


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None, program: str) -> int:
    """Parse, load the loader configuration, run the chosen sub-command's handler (``loader.deploy``, ``loader.gendeploy``)."""
    args = parser.parse_args(argv)

    def body() -> int:
        config = loader_config.load(args.config, cli.parse_overrides(args.overrides))
        return args.handler(args, config)

    return cli.run_main(body, program)
