"""``python -m localwhisk``: serve the OpenWhisk REST API; ``user``/``limits`` admin commands.

* ``python -m localwhisk [--config F] [--set K=V]`` serves until SIGINT/SIGTERM;
* ``python -m localwhisk user create NAME [--namespace NS] [--auth UUID:KEY]`` prints ``uuid:key``;
  ``user list``, ``user delete NAME``;
* ``python -m localwhisk limits set NS --invocationsPerMinute N --concurrentInvocations N``;
  ``limits get NS``, ``limits delete NS``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from faasload import cli, logsetup

from . import config as lw_config

LOG = logging.getLogger("localwhisk")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localwhisk",
                                     description="localwhisk: a single-host OpenWhisk-compatible platform")
    cli.add_config_arguments(parser, lw_config.DEFAULT_PATH)
    parser.add_argument("--validate", action="store_true", help="check the configuration and exit")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the REST API (the default)")
    user = commands.add_parser("user", help="manage users (as wskadmin user)").add_subparsers(dest="user_command",
                                                                                              required=True)
    create = user.add_parser("create", help="create a user; prints uuid:key")
    create.add_argument("subject")
    create.add_argument("-ns", "--namespace", help="namespace (default: the subject)")
    create.add_argument("-u", "--auth", help="use this uuid:key instead of a generated one")
    user.add_parser("list", help="list users: subject, namespace, uuid:key")
    delete = user.add_parser("delete", help="delete a user")
    delete.add_argument("subject")
    limits = commands.add_parser("limits", help="per-namespace limits (as wskadmin limits)").add_subparsers(
        dest="limits_command", required=True)
    set_limits = limits.add_parser("set", help="set overrides")
    set_limits.add_argument("namespace")
    set_limits.add_argument("--invocationsPerMinute", type=int)
    set_limits.add_argument("--concurrentInvocations", type=int)
    limits.add_parser("get", help="show overrides").add_argument("namespace")
    limits.add_parser("delete", help="remove overrides").add_argument("namespace")
    return parser


def admin(args, config) -> int:
    from .users import UserError, UserStore
    store = UserStore(config.state.dir)
    try:
        if args.command == "user":
            if args.user_command == "create":
                print(store.create(args.subject, namespace=args.namespace, authkey=args.auth).authkey)
            elif args.user_command == "list":
                for identity in store.list():
                    print(f"{identity.subject}\t{identity.namespace}\t{identity.authkey}")
            else:
                store.delete(args.subject)
                print("Subject deleted")
        elif args.limits_command == "set":
            print(json.dumps(store.set_limits(args.namespace, invocationsPerMinute=args.invocationsPerMinute,
                                              concurrentInvocations=args.concurrentInvocations)))
        elif args.limits_command == "get":
            print(json.dumps(store.limits_for(args.namespace)))
        else:
            store.delete_limits(args.namespace)
            print("Limits deleted")
    except UserError as exc:
        print(f"localwhisk: {exc}", file=sys.stderr)
        return cli.EXIT_FAILURE
    return cli.EXIT_OK


def write_apihost(path: Path, url: str) -> None:
    """``url`` into ``path`` atomically (a reader sees the whole line or no file)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as stream:
            stream.write(url + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_apihost(path: Path, url: str | None = None) -> None:
    """Remove ``path`` (only if it still holds ``url``, when given: never another instance's)."""
    try:
        if url is None or path.read_text(encoding="utf-8").strip() == url:
            path.unlink()
    except FileNotFoundError:
        pass


def serve(config) -> int:
    from .http.server import ApiServer
    from .platform import Platform
    apihost_file = config.state.dir / "apihost"
    remove_apihost(apihost_file)  # a killed instance's URL must never be read as this one's
    server = ApiServer((config.server.host, config.server.port), None)
    platform = Platform(config, api_host=server.url)
    server.platform = platform
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    platform.start()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    thread.start()
    assert platform.backend is not None, "Platform.start() sets the backend"
    try:
        write_apihost(apihost_file, server.url)
        LOG.info("serving the OpenWhisk API on %s (backend %s)", server.url, platform.backend.name)
        stop.wait()
    finally:
        remove_apihost(apihost_file, server.url)  # first: the URL stops being advertised
        LOG.info("stopping: removing containers")
        server.shutdown()
        server.server_close()
        platform.stop()
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        config = lw_config.load(args.config, cli.parse_overrides(args.overrides))
        if args.validate:
            return cli.EXIT_OK
        if args.command in ("user", "limits"):
            return admin(args, config)
        logsetup.apply(config.logging, str(args.config))
        return serve(config)

    return cli.run_main(body, "localwhisk")


if __name__ == "__main__":
    sys.exit(main())
