"""Running one experiment through the pipeline: database, experiment row, monitor, signals, summary.

Both modes call :func:`run_experiment` with their trace sources; it returns the
summary once everything is stored (and stores it in ``experiments.summary``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from faasload import cli
from faasload.clock import RealClock
from faasload.config import ConfigError
from faasload.errors import Failure
from faasload.retry import Backoff
from faasload.token_file import TokenFileError
from loader import stop_signals
from loader.cluster.membership import ClusterSettings, Membership
from loader.completion.resource_batches import BatchSettings
from loader.completion.tracker import TrackerSettings
from loader.config import LoaderConfig
from loader.pipeline import Pipeline, PipelineSettings
from loader.plan import TraceSource
from loader.platform import client as platform_client
from loader.platform.client import OpenWhiskClient
from loader.platform.keys import UserKey
from loader.storage import experiments
from loader.storage.database import StoreUnavailable, open_database
from loader.storage.dsn import mask_dsn
from loader.storage.recorder import OnStored
from loader.storage.rows import ExperimentRow, ExperimentState
from loader.storage.whole_summary import whole_experiment_summary
from loader.storage.writer_process import WriterProcess
from loader.verdict import Thresholds, fidelity_from_summary, judge

log = logging.getLogger(__name__)


class ExperimentError(Failure):
    """The experiment cannot be recorded as asked (e.g. its name is taken)."""


@dataclass(frozen=True)
class ExperimentSpec:
    """What a mode asks of :func:`run_experiment`."""

    mode: str                                # "injection" | "generation"
    sources: Iterable[TraceSource]
    keys: Mapping[str, UserKey]
    planned_total: int | None = None
    planned_duration_s: float | None = None  # the last planned offset (the live progress line's total)
    experiment_planned_total: int | None = None  # a resumed generation: planned over all its sessions
    on_stored: OnStored | None = None
    record_cancelled: bool = True            # the generator resumes unsent invocations instead
    reuse_experiment: bool = False           # the generator resumes into its experiment
    seed: int | None = None


def make_client(config: LoaderConfig) -> OpenWhiskClient:
    return platform_client.make_client(config.openwhisk)


def pipeline_settings(config: LoaderConfig, *, record_cancelled: bool = True) -> PipelineSettings:
    c = config.completion
    return PipelineSettings(
        workers=config.injection.workers,
        sender_processes=config.injection.sender_processes,
        max_in_flight=config.injection.max_in_flight,
        tracker=TrackerSettings(c.event_timeout_s, c.poll_interval_s, c.record_retry_s, c.final_deadline_s, c.fetches_in_flight),
        progress_interval_s=config.injection.progress_interval_s,
        late_threshold_us=round(config.injection.late_threshold_ms * 1000),
        record_cancelled=record_cancelled,
        invoke_retries=config.openwhisk.invoke_retries,
        invoke_retry_backoff_s=config.openwhisk.invoke_retry_backoff_s,
        resources=BatchSettings(c.resources_batch_max, c.resources_batch_wait_s, c.resources_wait_s,
                                c.resources_wait_max_s, c.resources_reask_unknown_s))


def open_monitor(config: LoaderConfig):
    """The monitor client, or None (disabled, or its client module not installed)."""
    if not config.monitor.enabled:
        log.info("monitor disabled (monitor:enabled is false): resources are not recorded")
        return None
    if config.monitor.endpoints:
        from loader.monitor_endpoints import open_monitors
        log.info("resources from the monitors of %s", ", ".join(f"{invoker} at {url}" for invoker, url
                                                               in sorted(config.monitor.endpoints.items())))
        try:
            return open_monitors(config.monitor.endpoints, config.monitor.token_file, config.monitor.timeout_s)
        except TokenFileError as exc:
            raise ConfigError("monitor:token_file", "", str(exc)) from None
    try:
        from loader.monitor_client import MonitorClient
    except ImportError:
        log.warning("monitor:enabled is true but loader.monitor_client is not available: "
                    "resources are not recorded (monitor treated as disabled)")
        return None
    log.info("resources from the monitor at %s", config.monitor.measurement_socket)
    return MonitorClient(config.monitor.measurement_socket, config.monitor.timeout_s)


def config_snapshot(config: LoaderConfig) -> dict:
    """The configuration as JSON, without the database password (alone or inside the DSN)."""
    data = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    database = data.get("database", {})
    if database.get("password") is not None:
        database["password"] = "***"
    if database.get("dsn"):
        database["dsn"] = mask_dsn(database["dsn"])
    return data


def experiment_name(config: LoaderConfig, mode: str) -> str:
    if config.experiment.name:
        return config.experiment.name
    now = datetime.datetime.now(datetime.UTC)
    return f"{mode}-{now.strftime('%Y%m%dT%H%M%S.%f')[:-3]}Z"


def _prepare_experiment(conn, config: LoaderConfig, spec: ExperimentSpec, name: str) -> int:
    """Create the experiment (a resumed generation reopens its own, a shard joins its experiment);
    refuse a taken name before any write."""
    description, snapshot = config.experiment.description, config_snapshot(config)
    if spec.reuse_experiment:
        return experiments.ensure_experiment(conn, name=name, mode=spec.mode, description=description,
                                             seed=spec.seed, config=snapshot, reopen=True)
    if config.cluster.shards > 1:  # the shards of one experiment join it (the shards table says who runs)
        return experiments.ensure_experiment(conn, name=name, mode=spec.mode, description=description,
                                             seed=spec.seed, config=snapshot)
    experiment_id = experiments.create_experiment(conn, name=name, mode=spec.mode, description=description,
                                                  seed=spec.seed, config=snapshot)
    if experiment_id is None:
        raise ExperimentError(_taken(experiments.find_experiment(conn, name), name))
    return experiment_id


def _taken(existing: ExperimentRow | None, name: str) -> str:
    state = f" (state {existing.state.value})" if existing is not None else ""
    held = f"already holds {existing.runs} runs" if existing is not None and existing.runs else "already exists"
    return (f"experiment {name!r} {held}{state}: choose another experiment:name (or leave it null for a name "
            f"from the start time); nothing was changed")


def final_state(summary: dict) -> ExperimentState:
    """``finished`` when every trace was replayed to its end or its error, else ``stopped``."""
    return ExperimentState.STOPPED if summary.get("stopped") or summary.get("failure") else ExperimentState.FINISHED


def run_experiment(config: LoaderConfig, spec: ExperimentSpec) -> dict:
    """Record one experiment; return its summary (also stored and logged).

    The summary's ``state`` says how it ended: ``stopped`` (by a signal, or ``failure`` says which
    internal failure) or ``finished`` (``trace_errors`` lists the traces that could not be read to
    their end).  An exception out of the pipeline stores the experiment ``stopped`` if the database
    still answers (else it stays ``running`` and the next start recovers it), then propagates.  A
    shard of a sharded experiment leaves the experiment's end to the shards' aggregate.
    """
    opened = open_database(config.database)
    membership = None
    try:
        name = experiment_name(config, spec.mode)
        try:
            lease = experiments.ExperimentLease(opened.config, name)  # before the row: no loader takes it for dead
        except experiments.ExperimentBusy as exc:
            raise ExperimentError(f"{exc}; nothing was changed") from None
        try:
            conn = experiments.open_store(opened.config)
            try:
                experiment_id = _prepare_experiment(conn, config, spec, name)
            finally:
                conn.close()
            log.info("experiment %r (id %d) in %s", name, experiment_id, opened.config.describe())
            if config.cluster.shards > 1:
                membership = Membership.join(opened.config, experiment_id, ClusterSettings.of_config(config.cluster),
                                             planned=spec.planned_total or 0, clock=RealClock())
            try:
                summary = _run_pipeline(config, spec, opened.config, experiment_id, lease, membership)
            except BaseException as exc:
                if membership is None:
                    _store_stopped(opened.config, experiment_id, name, exc)
                raise
            if spec.experiment_planned_total is not None:  # the stored summary covers every session
                summary = whole_experiment_summary(opened.config, experiment_id, summary,
                                                   late_threshold_us=round(config.injection.late_threshold_ms * 1000),
                                                   planned_total=spec.experiment_planned_total)
            summary["experiment"] = {"id": experiment_id, "name": name}
            thresholds = Thresholds.of_config(config.injection.fail_on)
            state = final_state(summary)
            summary["state"] = state.value
            if membership is None:
                if spec.mode == "injection":  # did the run reproduce its trace? (loader/verdict.py)
                    summary["verdict"] = judge(fidelity_from_summary(summary), thresholds).as_dict()
                _finish_experiment(opened.config, experiment_id, summary, config.database.retry_interval_s, state)
            else:
                summary["shard"] = str(membership.shard)
                summary["cluster"] = membership.finish(summary, round(config.injection.late_threshold_ms * 1000))
                if spec.mode == "injection":  # the experiment's verdict: over every shard's runs
                    summary["verdict"] = judge(fidelity_from_summary(summary["cluster"]), thresholds).as_dict()
        finally:
            lease.release()
    except BaseException as exc:
        if membership is not None:
            membership.abandon(exc)
        raise
    finally:
        if membership is not None:
            membership.close()
        opened.close()
    log.info("experiment %r %s: %s", name, "ended" if state is ExperimentState.FINISHED else state.value,
             ", ".join(f"{status} {n}" for status, n in summary["statuses"].items()) or "nothing run")
    return summary


def _store_stopped(database, experiment_id: int, name: str, exc: BaseException) -> None:
    """After the pipeline raised: store the experiment ``stopped`` with the error, if the database answers."""
    summary = {"state": ExperimentState.STOPPED.value, "stopped": True,
               "failure": f"{type(exc).__name__}: {exc}", "experiment": {"id": experiment_id, "name": name}}
    try:
        experiments.finish_experiment(database, experiment_id, summary, None, ExperimentState.STOPPED)
    except Exception:  # noqa: BLE001 (the database may be what failed: the experiment stays running, recoverable)
        log.error("experiment %r could not be stored as stopped: it stays 'running' until a recovery "
                  "(python -m loader --recover %s)", name, name, exc_info=True)


def _run_pipeline(config: LoaderConfig, spec: ExperimentSpec, database, experiment_id: int,
                  lease: experiments.ExperimentLease, membership: Membership | None = None) -> dict:
    start_at_s = membership.wait_for_start() if membership is not None else None
    db = config.database
    writer = WriterProcess(database, batch_size=db.batch_size, flush_interval_s=db.flush_interval_s,
                           retry_interval_s=db.retry_interval_s).start()
    pipeline = Pipeline(sources=spec.sources, keys=spec.keys, client=make_client(config), writer=writer,
                        experiment_id=experiment_id,
                        settings=pipeline_settings(config, record_cancelled=spec.record_cancelled),
                        user_events=config.openwhisk.user_events, monitor=open_monitor(config),
                        on_stored=spec.on_stored, planned_total=spec.planned_total,
                        planned_duration_s=spec.planned_duration_s,
                        on_started=lambda epoch_s: lease.mark_started(experiment_id, round(epoch_s * 1_000_000)))
    if membership is not None:
        stats = pipeline.stats
        membership.track(lambda: (stats.issued, stats.completed, pipeline.started_epoch_s))
    try:
        with stop_signals.forwarding(pipeline.request_stop):
            summary = pipeline.run(start_at_s)
    finally:
        writer.close()
    summary["start_epoch_us"] = round(pipeline.start_epoch_s * 1_000_000)
    return summary


def _finish_experiment(database, experiment_id: int, summary: dict, retry_interval_s: float,
                       state: ExperimentState, attempts: int = 30) -> None:
    """Store the start time and the summary, on a fresh connection (the server may have restarted)."""
    backoff = Backoff.fixed(retry_interval_s, max_retries=attempts - 1)
    retry = 0
    while True:
        try:
            experiments.finish_experiment(database, experiment_id, summary, summary["start_epoch_us"], state)
            return
        except StoreUnavailable as exc:
            retry += 1
            if backoff.gives_up(retry):
                raise
            delay_s = backoff.delay_s(retry)
            log.warning("storing the experiment summary failed (%s); retrying in %.1f s", exc, delay_s)
            time.sleep(delay_s)


def exit_code(summary: dict) -> int:
    """0 when every trace was replayed to its end (or the run was stopped by a signal), 1 otherwise (said on stderr)."""
    code = cli.EXIT_OK
    if summary.get("failure"):
        print(f"loader: the run was stopped by an internal failure: {summary['failure']} (stored as 'stopped'; what "
              "was sent is recorded)", file=sys.stderr)
        code = cli.EXIT_FAILURE
    errors = summary.get("trace_errors") or []
    if errors:
        lost = sum(e["lost"] or 0 for e in errors)
        print(f"loader: {len(errors)} trace{'s' if len(errors) > 1 else ''} could not be read to their end "
              f"({lost} planned invocations not sent):", file=sys.stderr)
        for error in errors:
            print(f"loader:   {error['error']}", file=sys.stderr)
        code = cli.EXIT_FAILURE
    return code
