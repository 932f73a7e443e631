"""``python -m monitor``: sample function containers' cgroups; serve measurements (see docs/monitor.md)."""

from __future__ import annotations

import argparse
import sys

from faasload import cli, logsetup

from . import config as monitor_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitor",
        description="FaaSLoad monitor: learns about function containers on a notification socket, samples "
                    "their memory and CPU from cgroups every few milliseconds, and answers measurement "
                    "queries on a second socket.")
    cli.add_config_arguments(parser, monitor_config.DEFAULT_PATH)
    parser.add_argument("--validate", action="store_true", help="check the configuration and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        config = monitor_config.load(args.config, cli.parse_overrides(args.overrides))
        if args.validate:
            return cli.EXIT_OK
        logsetup.apply(config.logging, str(args.config))
        from . import daemon  # the daemon proper; nothing runs at import
        return daemon.run(config)

    return cli.run_main(body, "monitor")


if __name__ == "__main__":
    sys.exit(main())
