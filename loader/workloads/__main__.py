"""``python -m loader.workloads SOURCE ... --out OUTDIR``: public traces and specs → a FaaSLoad workload.

Sources: ``azure2019 --trace DIR``, ``azure2021 --trace FILE``, ``faasprofiler --config FILE``,
``synthetic --spec FILE``.  Writes ``OUTDIR/traces/`` (an ``injection:tracedir``),
``OUTDIR/manifest.yml``, ``OUTDIR/mapping.csv``, ``OUTDIR/dropped.csv`` and
``OUTDIR/workload.json``.  Reference: docs/workloads.md.  Exit status: 0 written,
2 bad input or option (one line naming the file:line, key or option), 1 other failure.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

from faasload import cli

from . import arrivals, naming
from .azure2019 import AppMemory
from .conversion import ConversionOptions
from .draws import Draws
from .limits import DEFAULT_RUNTIME_MEMORY_MB, PlatformLimits
from .mapping import DEFAULT_MANIFEST, MapMode, MemoryPick
from .records import WorkloadError
from .specs import check_text

PROGRAM = "loader.workloads"


def _factor(option: str):
    def parse(text: str) -> Fraction:
        try:
            return arrivals.parse_factor(text, option)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value
    return parse


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _minutes(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    if not sep or not lo.isdigit() or not hi.isdigit() or int(lo) >= int(hi):
        raise argparse.ArgumentTypeError(f"{text!r} is not A:B with integers A < B (minutes A to B-1)")
    return int(lo), int(hi)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not within [0, 1]")
    return value


def _common(default_map: MapMode) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("output and mapping (every source)")
    group.add_argument("--out", type=Path, required=True, help="output directory (must not exist, or be empty)")
    group.add_argument("--seed", type=int, default=None,
                       help="seed of every random draw (default: the spec's seed, else 0)")
    group.add_argument("--map", dest="map_mode", type=MapMode, choices=list(MapMode), default=default_map,
                       help=f"how trace functions become actions (default {default_map.value})")
    group.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST,
                       help="wskdeploy manifest of the actions to map onto (nearest, one-to-one, named)")
    group.add_argument("--users", dest="users_by", type=naming.UsersBy, choices=list(naming.UsersBy),
                       default=naming.UsersBy.OWNER, help="one OpenWhisk user per owner (default), app or function")
    group.add_argument("--time-scale", type=_factor("--time-scale"), default=Fraction(1),
                       help="multiply every time by F (0.5: twice as fast; 2: twice as slow)")
    group.add_argument("--sample", type=_positive(int), default=None,
                       help="keep N functions, one per quantile of invocation rate (seeded)")
    group.add_argument("--inputs", type=_positive(int), default=10,
                       help="mapped actions with an input kind get N.jpg/N.wav/N.avi with N drawn in 1..INPUTS")
    group.add_argument("--input", dest="input_object", default="none",
                       help="INPUT of lines that have no other (default 'none')")
    group.add_argument("--default-memory-mb", type=_positive(float), default=128.0,
                       help="memory of functions whose source gives none (calibrated mapping)")
    group.add_argument("--memory", type=MemoryPick, choices=list(MemoryPick), default=MemoryPick.MEDIAN,
                       help="calibrated memory_mb: the function's median (default) or a draw per invocation")
    group.add_argument("--draws", type=Draws, choices=list(Draws), default=Draws.STRATIFIED,
                       help="per-invocation durations (and --memory draw): stratified (default: each "
                            "function's warm invocations follow its percentiles even when few), quantiles "
                            "(the strata's midpoints: the exact quantiles, no tails) or iid")
    group.add_argument("--cpu-share", type=_share, default=1.0,
                       help="share of its duration the calibrated action spends computing (default 1)")
    group.add_argument("--end-early-ms", type=_non_negative, default=0.0,
                       help="calibrated actions return this much before their duration: the time the platform "
                            "records after an action returns, measured by a first replay (docs/workloads.md; "
                            "default 0)")
    group.add_argument("--runtime", dest="calibrated_runtime", default="python:3.11",
                       help="kind of the calibrated actions (default python:3.11)")
    limits = parser.add_argument_group("platform limits (defaults: OpenWhisk's, also localwhisk's)")
    for option, default, meaning in (("--min-memory-mb", 128, "smallest action memory limit"),
                                     ("--max-memory-mb", 512, "largest action memory limit"),
                                     ("--min-duration-ms", 100, "smallest action time limit"),
                                     ("--max-duration-ms", 300_000, "largest action time limit"),
                                     ("--actions-per-minute", 60, "invocations per namespace per minute"),
                                     ("--concurrent-actions", 30, "invocations of a namespace in flight")):
        limits.add_argument(option, type=_positive(int), default=default, help=f"{meaning} (default {default})")
    limits.add_argument("--runtime-memory-mb", type=_positive(float), default=DEFAULT_RUNTIME_MEMORY_MB,
                        help="resident memory of the action runtime before the calibrated action allocates")
    limits.add_argument("--keepalive-s", type=_non_negative, default=600.0,
                        help="how long the platform keeps an idle container warm, for the predicted cold starts "
                             "(default 600: OpenWhisk's 10 minutes)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {PROGRAM}", description=__doc__.split("\n\n")[0])
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    azure_common = _common(MapMode.NEAREST)
    named_common = _common(MapMode.NAMED)
    a19 = sources.add_parser("azure2019", parents=[azure_common], help="Azure Functions 2019 (published or triple)")
    a19.add_argument("--trace", type=Path, required=True, help="directory of the CSV files")
    a19.add_argument("--day", type=int, default=None, help="day NN of the published files (needed if several)")
    a19.add_argument("--minutes", type=_minutes, default=None, help="keep minutes A to B-1 (header labels)")
    a19.add_argument("--granularity", choices=("minute", "second"), default="minute",
                     help="what one count column covers (default minute)")
    a19.add_argument("--iat", type=arrivals.Iat, choices=list(arrivals.Iat), default=arrivals.Iat.EXPONENTIAL,
                     help="spreading within a column (default exponential)")
    a19.add_argument("--no-phase-shift", dest="phase_shift", action="store_false",
                     help="equidistant: start every function at the column's start (bursts)")
    a19.add_argument("--rate-scale", type=_factor("--rate-scale"), default=Fraction(1),
                     help="thin (F < 1) or replicate (F > 1) invocations, seeded")
    a19.add_argument("--function", dest="functions", action="append", default=[], metavar="HASH",
                     help="keep only functions whose HashFunction starts with HASH (repeatable)")
    a19.add_argument("--app-memory", type=AppMemory, choices=list(AppMemory), default=AppMemory.EQUAL,
                     help="published files: split an app's memory equally (default), by busy time, or copy it")
    a21 = sources.add_parser("azure2021", parents=[azure_common], help="Azure Functions 2021 invocations")
    a21.add_argument("--trace", type=Path, required=True, help="the CSV file (app,func,end_timestamp,duration)")
    fp = sources.add_parser("faasprofiler", parents=[named_common], help="a FaaSProfiler workload JSON")
    fp.add_argument("--config", type=Path, required=True, help="the workload_configs JSON file")
    sy = sources.add_parser("synthetic", parents=[named_common], help="FaaSLoad's synthetic YAML spec")
    sy.add_argument("--spec", type=Path, required=True, help="the YAML specification")
    return parser


def open_source(args: argparse.Namespace):
    if args.source == "azure2019":
        from .azure2019 import Azure2019Options, Azure2019Source
        return Azure2019Source(Azure2019Options(
            args.trace, args.day, args.minutes, 60 if args.granularity == "minute" else 1, args.iat, args.phase_shift,
            args.rate_scale, tuple(args.functions), args.app_memory, args.seed or 0))
    if args.source == "azure2021":
        from .azure2021 import Azure2021Options, Azure2021Source
        return Azure2021Source(Azure2021Options(args.trace))
    if args.source == "faasprofiler":
        from . import faasprofiler
        return faasprofiler.load(args.config, args.seed)
    from . import synthetic
    return synthetic.load(args.spec, args.seed)


def recorded_options(args: argparse.Namespace) -> dict:
    """Every option as given or defaulted, in plain JSON types."""
    def plain(value):
        if isinstance(value, (MapMode, MemoryPick, Draws, naming.UsersBy, arrivals.Iat, AppMemory)):
            return value.value
        if isinstance(value, (Path, Fraction)):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return {key: plain(value) for key, value in sorted(vars(args).items())}


def summary(document: dict, out: Path) -> str:
    counts, load = document["counts"], document["limits"]
    platform = load["platform"]
    lines = [(f"wrote {out}: {counts['traces']} traces ({counts['users']} users, {counts['actions']} actions), "
              f"{counts['invocations']} invocations over {document['duration_s']:.3f} s")]
    if document["sample"]:
        parts = [(f"{k} W1 {v['wasserstein']:g} ({100 * (v['relative_to_mean'] or 0):.1f}% of mean), "
                  f"log10 W1 {v['wasserstein_log10']:g}")
                 for k, v in document["sample"].items() if isinstance(v, dict)]
        lines.append(f"sample of {counts['sampled']} of {counts['functions']} functions: {'; '.join(parts)}")
    concurrency = load["max_user_peak_concurrency"]
    lines.append(f"limits: busiest user peaks at {load['max_user_peak_per_minute']} invocations/minute and "
                 f"{'unknown' if concurrency is None else concurrency} in flight; "
                 f"{load['users_over_actions_per_minute']} users exceed {platform['actions_per_minute']}/minute, "
                 f"{load['users_over_concurrent_actions']} exceed {platform['concurrent_actions']} concurrent"
                 + (" (raise the platform's limits: docs/workloads.md)" if load["users_over_actions_per_minute"]
                    or load["users_over_concurrent_actions"] else ""))
    lines.append(f"on average {load['mean_in_flight']} invocations in flight (with --map calibrated, x --cpu-share "
                 "= cores kept busy)")
    if load["pool_memory_mb"] is not None:
        lines.append(f"containers: a pool of {load['pool_memory_mb']} MB holds every container the replay starts (per "
                     "user and action, its peak invocations in flight x its memory limit; a container stays "
                     f"{platform['keepalive_s']:g} s after its last use, --keepalive-s); a smaller one evicts some, and "
                     "more invocations start cold than predicted (docs/workloads.md)")
    lines.append(f"clamped: {len(document['clamped'])} traces (mapping.csv, workload.json); dropped: "
                 f"{counts['dropped']} functions (dropped.csv); thinned away: {counts['thinned_away']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        try:
            return convert_and_report(args)
        except WorkloadError as exc:
            print(f"{PROGRAM}: {exc}", file=sys.stderr)
            return cli.EXIT_CONFIG

    return cli.run_main(body, PROGRAM)


def convert_and_report(args: argparse.Namespace) -> int:
    from .conversion import convert
    platform = PlatformLimits(args.min_memory_mb, args.max_memory_mb, args.min_duration_ms, args.max_duration_ms,
                              args.actions_per_minute, args.concurrent_actions, args.runtime_memory_mb,
                              args.keepalive_s)
    if platform.min_memory_mb > platform.max_memory_mb or platform.min_duration_ms > platform.max_duration_ms:
        raise WorkloadError("--min-memory-mb/--max-memory-mb/--min-duration-ms/--max-duration-ms",
                            "a minimum is above its maximum")
    check_text(args.input_object, "--input")
    source = open_source(args)
    seed = args.seed if args.seed is not None else getattr(source, "seed", 0)
    options = ConversionOptions(args.out, seed, args.map_mode, args.manifest, args.users_by, args.time_scale,
                                args.sample, platform, args.default_memory_mb, args.cpu_share, args.memory,
                                args.inputs, args.input_object, args.calibrated_runtime, args.draws,
                                args.end_early_ms)
    document = convert(source, options, recorded_options(args))
    print(summary(document, args.out))
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
