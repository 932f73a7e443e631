"""Command-line plumbing shared by the daemons' ``__main__``: ``--config``, ``--set``, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError
from .errors import Failure

#: Exit codes of the daemons.
EXIT_OK = 0
EXIT_FAILURE = 1       # the run failed (a service unreachable, a store error, ...)
EXIT_CONFIG = 2        # bad command line or configuration; nothing was started
EXIT_BREACHED = 3      # the run ended but did not reproduce its trace (injection:fail_on, loader/verdict.py)
EXIT_INTERRUPTED = 130


def add_config_arguments(parser: argparse.ArgumentParser, default_path: Path) -> None:
    parser.add_argument("-c", "--config", type=Path, default=default_path, metavar="FILE",
                        help=f"YAML configuration file (default: {default_path})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key, e.g. --set logging:root:level=DEBUG (value parsed as YAML); repeatable")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("--set", item, "expected KEY=VALUE, e.g. injection:workers=32")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError("--set", key, f"value is not valid YAML: {exc}") from None
    return overrides


def run_main(body: Callable[[], int], program: str) -> int:
    """Run a daemon's main body, mapping errors to an exit code and one line on stderr.

    A :class:`~faasload.errors.Failure` (anticipated) is that line only; any other exception is
    unexpected and also logged at ERROR with its traceback.
    """
    try:
        return body()
    except ConfigError as exc:
        print(f"{program}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Failure as exc:  # anticipated: the message says it all
        print(f"{program}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # the one place errors become an exit code  # noqa: BLE001
        text = f"{type(exc).__name__}: {exc}".rstrip(": ")
        logging.getLogger(program).error("unexpected error: %s", text, exc_info=True)
        print(f"{program}: error: {text} (an unexpected error: its traceback is in the log)", file=sys.stderr)
        return EXIT_FAILURE
