"""``python -m loader``: inject a workload or generate a dataset (see docs/injector.md, docs/generator.md)."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from faasload import cli, logsetup
from faasload.config import ConfigError
from loader import config as loader_config
from loader import stop_signals
from loader.cluster.shard import ShardError, parse_shard

#: The module of each mode; each has ``validate(config, source) -> int`` and ``run(config, source) -> int``.
MODES = {"injection": "loader.injection.mode", "generation": "loader.generation.mode"}


def mode_module(config: loader_config.LoaderConfig) -> ModuleType:
    return importlib.import_module(MODES["generation" if config.generation.enabled else "injection"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loader",
        description="FaaSLoad loader: replays injection traces against OpenWhisk (injector mode) or runs every "
                    "function on every input with random parameters (generator mode, generation:enabled), "
                    "and stores every invocation's record and resource usage in PostgreSQL.")
    cli.add_config_arguments(parser, loader_config.DEFAULT_PATH)
    parser.add_argument("--validate", "--dry-run", dest="validate", action="store_true",
                        help="check the configuration, traces, user keys and actions, report every problem, "
                             "invoke nothing; exit 0 if all is well, 2 otherwise")
    parser.add_argument("--recover", metavar="EXPERIMENT",
                        help="complete an experiment whose loader died (SIGKILL, power cut): fetch the records of "
                             "its runs left 'sent', mark the rest 'lost', count the invocations never sent, store "
                             "it 'crashed', then exit (every start does this for experiments left running)")
    parser.add_argument("--shard", metavar="I/N",
                        help="run shard I of N (1-based) of the experiment: the traces of the users that hash to I "
                             "(sets cluster:shard and cluster:shards; docs/scale-out.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop_signals.install()  # a stop at any moment is a request, never a kill in the middle of a write

    def body() -> int:
        overrides = cli.parse_overrides(args.overrides)
        if args.shard is not None:
            try:
                shard = parse_shard(args.shard)
            except ShardError as exc:
                raise ConfigError("--shard", "", str(exc)) from None
            overrides.update({"cluster:shard": shard.index, "cluster:shards": shard.count})
        config = loader_config.load(args.config, overrides)
        logsetup.apply(config.logging, str(args.config))
        mode = mode_module(config)  # the daemon proper; nothing runs at import
        if args.validate:
            return mode.validate(config, args.config)
        from loader import recovery
        if args.recover is not None:
            summary = recovery.recover_named(config, args.recover)
            print(f"experiment {args.recover!r} recovered (crashed): {recovery.describe(summary)}")
            return cli.EXIT_OK
        recovery.recover_abandoned(config)
        return mode.run(config, args.config)

    return cli.run_main(body, "loader")


if __name__ == "__main__":
    sys.exit(main())
