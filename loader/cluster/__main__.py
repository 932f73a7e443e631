"""``python -m loader.cluster status``: the shards of an experiment and its aggregate, computed now.

Reads only: the aggregate is computed from the runs as they are (a shard still running shows
its progress, a shard whose heartbeat is stale shows ``dead``); nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys

from faasload import cli
from faasload.config import ConfigError
from loader import config as loader_config
from loader.cluster.aggregate import aggregate, format_shards
from loader.storage import experiments, shards
from loader.storage.database import open_database
from loader.storage.summary import format_summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loader.cluster",
                                     description="Scale-out: the shards of a sharded experiment (docs/scale-out.md).")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="each shard's state and progress, and the experiment's aggregate now")
    cli.add_config_arguments(status, loader_config.DEFAULT_PATH)
    status.add_argument("--experiment", metavar="NAME", help="the experiment (default: experiment:name)")
    status.add_argument("--json", action="store_true", help="print the aggregate as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        config = loader_config.load(args.config, cli.parse_overrides(args.overrides))
        name = args.experiment or config.experiment.name
        if not name:
            raise ConfigError(str(args.config), "experiment:name", "no experiment named (give --experiment NAME)")
        opened = open_database(config.database)
        try:
            conn = experiments.open_store(opened.config)
            try:
                experiment_id = shards.find_experiment(conn, name)
                if experiment_id is None:
                    print(f"no experiment {name!r} in {opened.config.describe()}", file=sys.stderr)
                    return cli.EXIT_FAILURE
                rows = shards.read_shards(conn, experiment_id, config.cluster.dead_after_s)
                if not rows:
                    print(f"experiment {name!r} has no shards (it was run by a single loader)", file=sys.stderr)
                    return cli.EXIT_FAILURE
                summary = aggregate(conn, experiment_id, rows, round(config.injection.late_threshold_ms * 1000))
            finally:
                conn.close()
        finally:
            opened.close()
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(f"experiment {name!r} (id {experiment_id}), {rows[0].shards} shards\n"
                  f"{format_summary(summary)}\nshards:\n{format_shards(summary)}")
        return cli.EXIT_OK

    return cli.run_main(body, "loader.cluster")


if __name__ == "__main__":
    sys.exit(main())
