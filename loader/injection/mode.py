"""Injector mode: replay the traces of ``injection:tracedir`` (docs/injector.md).

Before anything is invoked, every trace is read once and checked, every user's key
file is read and every (user, action) is looked up on the platform with that user's
key.  ``--validate`` prints every problem; a real run refuses to start on any.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from faasload import cli
from faasload.token_file import TokenFileError, read_token
from loader import verdict
from loader.cluster.aggregate import format_shards
from loader.cluster.shard import Shard
from loader.config import LoaderConfig
from loader.experiment import ExperimentSpec, exit_code, make_client, run_experiment
from loader.injection import limits
from loader.injection.traces import (
    FileTraceSource,
    TraceScan,
    list_traces,
    parse_name,
    read_ahead_bytes,
    scan_trace,
)
from loader.platform.check import check_actions
from loader.platform.client import OpenWhiskClient
from loader.platform.keys import KeyFileError, UserKey, load_key
from loader.storage.summary import format_summary

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class InjectionPlan:
    """The checked traces: what will be replayed."""

    traces: tuple[TraceScan, ...]
    keys: dict[str, UserKey]
    problems: tuple[str, ...]

    @property
    def invocations(self) -> int:
        return sum(t.invocations for t in self.traces)

    @property
    def duration_s(self) -> float:
        return max((t.last_offset_us for t in self.traces), default=0) / 1_000_000


def check(config: LoaderConfig, source: str | Path, client: OpenWhiskClient | None = None) -> InjectionPlan:
    """Read every trace, key and action; collect every problem (none means ready to run)."""
    problems: list[str] = []
    tracedir, authkeys = config.injection.tracedir, config.openwhisk.authkeys
    if not tracedir.is_dir():
        return InjectionPlan((), {}, (f"{source}: injection:tracedir: directory does not exist: {tracedir}",))
    paths, name_problems = list_traces(tracedir)
    problems += [str(p) for p in name_problems]
    if not paths and not name_problems:
        problems.append(f"{tracedir}: no trace files (expected files named USER-ACTION[-...])")
    shard = Shard(config.cluster.shard, config.cluster.shards)
    if shard.sharded and paths:
        owned = [p for p in paths if shard.owns(parse_name(p).user)]
        log.info("shard %s replays %d of the %d traces (the users that hash to it, docs/scale-out.md)", shard,
                 len(owned), len(paths))
        if not owned:
            problems.append(f"{tracedir}: shard {shard} replays no trace: none of the "
                            f"{len({parse_name(p).user for p in paths})} users hashes to it (fewer shards?)")
        paths = owned
    problems += _token_problems(config, source)
    scans = [scan_trace(path) for path in paths]
    for scan in scans:
        problems += [str(p) for p in scan.problems]
        if not scan.problems and scan.invocations == 0:
            log.warning("%s: no invocation (empty trace)", scan.path)
    keys: dict[str, UserKey] = {}
    if not authkeys.is_dir():
        problems.append(f"{source}: openwhisk:authkeys: directory does not exist: {authkeys}")
    else:
        for user in sorted({s.name.user for s in scans}):
            try:
                keys[user] = load_key(authkeys, user)
            except KeyFileError as exc:
                problems.append(str(exc))
    pairs = sorted({(s.name.user, s.name.action) for s in scans if s.name.user in keys})
    problems += check_actions(client or make_client(config), keys, pairs, config.openwhisk.apihost)
    return InjectionPlan(tuple(scans), keys, tuple(problems))


def _token_problems(config: LoaderConfig, source: str | Path) -> list[str]:
    """The monitors' token file, read now rather than when the first activation completes."""
    if not config.monitor.enabled or config.monitor.token_file is None:
        return []
    try:
        read_token(config.monitor.token_file)
    except TokenFileError as exc:
        return [f"{source}: monitor:token_file: {exc}"]
    return []


def validate(config: LoaderConfig, source: str | Path) -> int:
    """``--validate``: print every problem; 0 if none, 2 otherwise."""
    plan = check(config, source)
    for problem in plan.problems:
        print(problem)
    if plan.problems:
        print(f"{len(plan.problems)} problem(s): nothing would be invoked", file=sys.stderr)
        return cli.EXIT_CONFIG
    print(f"ok: {len(plan.traces)} traces, {plan.invocations} invocations over {plan.duration_s:.3f} s, "
          f"{len(plan.keys)} users, {len({t.name.action for t in plan.traces})} actions")
    client = make_client(config)
    try:
        over = limits.over_limits(client, plan.keys, plan.traces, limits.recorded_durations_ms(config.database))
    finally:
        client.close()
    for line in over:
        print(line)
    if over:
        print(f"{len(over)} user limit(s) exceeded or unknown: the run would be throttled and not reproduce its "
              f"trace (raise them: wskadmin limits set, or python -m localwhisk limits set)")
    return cli.EXIT_OK


def run(config: LoaderConfig, source: str | Path) -> int:
    """Check, then replay every trace; print the summary."""
    plan = check(config, source)
    if plan.problems:
        for problem in plan.problems:
            print(f"loader: {problem}", file=sys.stderr)
        print(f"loader: {len(plan.problems)} problem(s) in the traces, keys or actions: nothing was invoked "
              f"(see them all with --validate)", file=sys.stderr)
        return cli.EXIT_CONFIG
    log.info("injecting %d traces (%d invocations over %.3f s) into %s", len(plan.traces), plan.invocations,
             plan.duration_s, config.openwhisk.apihost)
    read_ahead = read_ahead_bytes(len(plan.traces))
    sources = [FileTraceSource.of_scan(t, incont=config.injection.incont, outcont=config.injection.outcont,
                                       read_ahead_bytes=read_ahead) for t in plan.traces]
    summary = run_experiment(config, ExperimentSpec(mode="injection", sources=sources, keys=plan.keys,
                                                    planned_total=plan.invocations,
                                                    planned_duration_s=plan.duration_s))
    print(f"experiment {summary['experiment']['name']!r} (id {summary['experiment']['id']})"
          + (f", shard {summary['shard']}" if "shard" in summary else ""))
    print(format_summary(summary))
    if "cluster" in summary:
        print(f"experiment (every shard):\n{format_summary(summary['cluster'])}\nshards:\n"
              f"{format_shards(summary['cluster'])}")
    print(verdict.describe(summary["verdict"]))
    code = exit_code(summary)   # a trace that ended early or an internal failure: 1, before any verdict
    if code == cli.EXIT_OK and verdict.breached(summary["verdict"]):
        print(f"loader: {verdict.describe(summary['verdict']).removeprefix('verdict: ')}", file=sys.stderr)
        return cli.EXIT_BREACHED
    return code
