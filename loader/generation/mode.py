"""Generator mode (``generation:enabled``): every function on every input of its kind (docs/generator.md).

For every function of the ``functions`` table (ordered by name), a fake trace
(:mod:`loader.generation.traces`): user ``user-<function>`` invokes it on inputs
``1..nbinputs[kind]`` with parameters drawn from its specs, one invocation every
``interinvocationtime`` seconds.  The traces go through the injector's pipeline
(:func:`loader.experiment.run_experiment`: scheduler, invoker pool, completions, store).
The session (:mod:`loader.generation.session`) resumes from the newest checkpoint of
``generation:statedir`` into the same experiment, and checkpoints (:mod:`loader.generation.checkpoint`)
periodically, on SIGINT/SIGTERM and at the end, covering only runs the pipeline
reported committed.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from faasload import cli
from loader.config import LoaderConfig
from loader.experiment import ExperimentSpec, config_snapshot, exit_code, make_client, run_experiment
from loader.generation.checkpoint import GenStateError
from loader.generation.session import Generation, GenerationError, GenerationSettings
from loader.platform.check import check_actions
from loader.platform.keys import KeyFileError, UserKey, load_key
from loader.storage import experiments
from loader.storage.database import open_database
from loader.storage.experiments import fetch_functions
from loader.storage.summary import format_summary

log = logging.getLogger(__name__)

__all__ = ["GenerationError", "check", "validate", "run"]


@dataclass
class GenerationPlan:
    """The checked generation: its traces, the users' keys, and every problem found."""

    generation: Generation | None
    keys: dict[str, UserKey]
    problems: list[str]


def check(config: LoaderConfig, source: str | Path, conn, client=None) -> GenerationPlan:
    """Functions, checkpoint, keys and deployed actions; every problem (none means ready to run)."""
    settings = GenerationSettings.from_config(config)
    try:
        generation = Generation(settings, fetch_functions(conn))
    except (GenerationError, GenStateError) as exc:
        return GenerationPlan(None, {}, [str(exc)])
    problems: list[str] = []
    keys: dict[str, UserKey] = {}
    authkeys = config.openwhisk.authkeys
    if not authkeys.is_dir():
        problems.append(f"{source}: openwhisk:authkeys: directory does not exist: {authkeys} "
                        f"(create the users with scripts/generator_create_users.sh)")
    else:
        for trace in generation.traces:
            try:
                keys[trace.user] = load_key(authkeys, trace.user)
            except KeyFileError as exc:
                problems.append(f"{exc} (create the users with scripts/generator_create_users.sh)")
    pairs = sorted({(t.user, t.action) for t in generation.traces if t.user in keys})
    for problem in check_actions(client or make_client(config), keys, pairs, config.openwhisk.apihost):
        problems.append(problem.replace("scripts/deploy_actions.sh", "scripts/generator_deploy_actions.sh"))
    return GenerationPlan(generation, keys, problems)


def _checked(config: LoaderConfig, source: str | Path, *, prepare: bool) -> GenerationPlan:
    """Check the plan; with ``prepare``, also create the experiment and reconcile it with the checkpoint."""
    opened = open_database(config.database)
    try:
        conn = experiments.open_store(opened.config)
        try:
            plan = check(config, source, conn)
            generation = plan.generation
            if prepare and not plan.problems and generation is not None and not generation.complete:
                experiment_id = experiments.ensure_experiment(
                    conn, name=generation.experiment, mode="generation", description=config.experiment.description,
                    seed=config.generation.seed, config=config_snapshot(config))
                generation.reconcile(conn, experiment_id)
        finally:
            conn.close()
    finally:
        opened.close()
    return plan


def validate(config: LoaderConfig, source: str | Path) -> int:
    """``--validate``: print every problem; 0 if none, 2 otherwise."""
    plan = _checked(config, source, prepare=False)
    for problem in plan.problems:
        print(problem)
    if plan.problems:
        print(f"{len(plan.problems)} problem(s): nothing would be invoked", file=sys.stderr)
        return cli.EXIT_CONFIG
    g = plan.generation
    assert g is not None, "a plan without problems has its generation"
    state = "new" if g.previous is None else f"resumed, {g.recorded} recorded at the checkpoint"
    print(f"ok: {len(g.traces)} functions, {g.planned} invocations, experiment {g.experiment!r} ({state})")
    return cli.EXIT_OK


def run(config: LoaderConfig, source: str | Path) -> int:
    """Check, resume, run the rest of the generation; print the summary."""
    plan = _checked(config, source, prepare=True)
    if plan.problems:
        for problem in plan.problems:
            print(f"loader: {problem}", file=sys.stderr)
        print(f"loader: {len(plan.problems)} problem(s): nothing was invoked (see them all with --validate)",
              file=sys.stderr)
        return cli.EXIT_CONFIG
    generation = plan.generation
    assert generation is not None, "a plan without problems has its generation"
    if generation.complete:
        print(f"generation of experiment {generation.experiment!r} is complete: {generation.planned} invocations "
              f"recorded; nothing to do (to start from scratch, delete {generation.settings.statedir})")
        return cli.EXIT_OK
    generation.checkpoint("start")
    remaining = generation.remaining
    log.info("generating %d of %d invocations (%d functions) into experiment %r", remaining, generation.planned,
             len(generation.traces), generation.experiment)
    named = dataclasses.replace(config, experiment=dataclasses.replace(config.experiment, name=generation.experiment))
    spec = ExperimentSpec(mode="generation", sources=generation.traces, keys=plan.keys, planned_total=remaining,
                          experiment_planned_total=generation.planned,
                          on_stored=generation.on_stored, record_cancelled=False, reuse_experiment=True,
                          seed=config.generation.seed)
    reason = "error"
    try:
        summary = run_experiment(named, spec)
        reason = "error" if summary.get("failure") else "stopped" if summary.get("stopped") else "end"
    finally:
        generation.checkpoint(reason)
    print(f"experiment {generation.experiment!r} (id {summary['experiment']['id']})")
    print(format_summary(summary))
    if generation.complete:
        print(f"generation complete: {generation.planned} invocations recorded")
    else:
        print(f"generation not complete: {generation.recorded} of {generation.planned} invocations recorded; "
              f"run the loader again to resume from {generation.last_path}")
    return exit_code(summary)
