"""``python -m loader.report EXPERIMENT [EXPERIMENT...] --out DIR``: an HTML report with figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faasload import cli

from ..dataset import DatasetError, NoSuchExperiment
from ..export import add_source_arguments, open_from_arguments
from .build import ReportError, write_report
from .data import ReportOptions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loader.report",
        description="Write DIR/index.html (self-contained: open it from disk) with the figures as PNG and SVG "
                    "files beside it: the experiment's verdict, configuration and provenance, issue rate, lateness, "
                    "latency and platform times per function, statuses, cold starts, resources and a per-function "
                    "table. With several experiments, a comparison against the first comes first.")
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT", help="experiment name (or id)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory (created)")
    parser.add_argument("--top", type=int, default=ReportOptions.top, metavar="N",
                        help=f"functions drawn apart, the most invoked first; the rest are grouped "
                             f"(default: {ReportOptions.top})")
    parser.add_argument("--group-by", choices=("function", "trace", "action"), default=ReportOptions.group_by,
                        help="what a function is: a user/action pair (default), a trace file (one replayed "
                             "function each, when several share a user and action), or an action whoever invoked it")
    parser.add_argument("--activation", dest="activations", action="append", default=[], metavar="ID",
                        help="an activation id for the resource timeline (repeatable; default: the highest peak "
                             "memory, the longest and the median duration)")
    add_source_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top < 1:
        print("loader.report: --top must be at least 1", file=sys.stderr)
        return cli.EXIT_CONFIG

    def body() -> int:
        options = ReportOptions(top=args.top, group_by=args.group_by, activations=tuple(args.activations))
        try:
            with open_from_arguments(args) as dataset:
                report = write_report(dataset, args.experiments, args.out, options)
        except (NoSuchExperiment, DatasetError, ReportError) as exc:
            print(f"loader.report: {exc}", file=sys.stderr)
            return cli.EXIT_CONFIG
        print(report.index)
        return cli.EXIT_OK

    return cli.run_main(body, "loader.report")


if __name__ == "__main__":
    sys.exit(main())
