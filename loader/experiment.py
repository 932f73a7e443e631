"""Running one experiment through the pipeline: database, experiment row, monitor, signals, summary.

Both modes call :func:`run_experiment` with their trace sources; it returns the
summary once everything is stored (and stores it in ``experiments.summary``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from faasload.clock import RealClock
from faasload.config import ConfigError
from faasload.retry import Backoff
from faasload.token_file import TokenFileError
from loader.cluster.membership import ClusterSettings, Membership
from loader.completion.tracker import TrackerSettings
from loader.config import LoaderConfig
from loader.pipeline import Pipeline, PipelineSettings
from loader.plan import TraceSource
from loader.platform import client as platform_client
from loader.platform.client import OpenWhiskClient
from loader.platform.keys import UserKey
from loader.storage import experiments
from loader.storage import writer as store
from loader.storage.database import StoreUnavailable, open_database
from loader.storage.dsn import mask_dsn
from loader.storage.recorder import OnStored
from loader.storage.whole_summary import whole_experiment_summary
from loader.verdict import Thresholds, fidelity_from_summary, judge

log = logging.getLogger(__name__)


class ExperimentError(RuntimeError):
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
        tracker=TrackerSettings(c.event_timeout_s, c.poll_interval_s, c.record_retry_s, c.final_deadline_s, c.workers),
        progress_interval_s=config.injection.progress_interval_s,
        late_threshold_us=round(config.injection.late_threshold_ms * 1000),
        record_cancelled=record_cancelled)


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


def _prepare_experiment(conn, config: LoaderConfig, spec: ExperimentSpec) -> tuple[int, str]:
    name = experiment_name(config, spec.mode)
    experiment_id = experiments.ensure_experiment(conn, name=name, mode=spec.mode, description=config.experiment.description,
                                            seed=spec.seed, config=config_snapshot(config))
    if not spec.reuse_experiment and config.cluster.shards == 1:  # shards join through the shards table
        existing = experiments.count_runs(conn, experiment_id)
        if existing:
            raise ExperimentError(f"experiment {name!r} already holds {existing} runs: choose another "
                                  f"experiment:name (or leave it null for a name from the start time)")
    return experiment_id, name


class _Signals:
    """SIGINT/SIGTERM only forward a stop request while the pipeline runs."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        self.pipeline.request_stop()

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def run_experiment(config: LoaderConfig, spec: ExperimentSpec) -> dict:
    """Record one experiment; return its summary (also stored and logged)."""
    opened = open_database(config.database)
    membership = None
    try:
        conn = experiments.open_store(opened.config)
        try:
            experiment_id, name = _prepare_experiment(conn, config, spec)
        finally:
            conn.close()
        log.info("experiment %r (id %d) in %s", name, experiment_id, opened.config.describe())
        if config.cluster.shards > 1:
            membership = Membership.join(opened.config, experiment_id, ClusterSettings.of_config(config.cluster),
                                         planned=spec.planned_total or 0, clock=RealClock())
        summary = _run_pipeline(config, spec, opened.config, experiment_id, membership)
        if spec.experiment_planned_total is not None:  # the stored summary covers every session
            summary = whole_experiment_summary(opened.config, experiment_id, summary,
                                               late_threshold_us=round(config.injection.late_threshold_ms * 1000),
                                               planned_total=spec.experiment_planned_total)
        summary["experiment"] = {"id": experiment_id, "name": name}
        thresholds = Thresholds.of_config(config.injection.fail_on)
        if membership is None:
            if spec.mode == "injection":  # did the run reproduce its trace? (loader/verdict.py)
                summary["verdict"] = judge(fidelity_from_summary(summary), thresholds).as_dict()
            _finish_experiment(opened.config, experiment_id, summary, config.database.retry_interval_s)
        else:
            summary["shard"] = str(membership.shard)
            summary["cluster"] = membership.finish(summary, round(config.injection.late_threshold_ms * 1000))
            if spec.mode == "injection":  # the experiment's verdict: over every shard's runs
                summary["verdict"] = judge(fidelity_from_summary(summary["cluster"]), thresholds).as_dict()
    except BaseException as exc:
        if membership is not None:
            membership.abandon(exc)
        raise
    finally:
        if membership is not None:
            membership.close()
        opened.close()
    log.info("experiment %r ended: %s", name,
             ", ".join(f"{status} {n}" for status, n in summary["statuses"].items()) or "nothing run")
    return summary


def _run_pipeline(config: LoaderConfig, spec: ExperimentSpec, database, experiment_id: int,
                  membership: Membership | None = None) -> dict:
    start_at_s = membership.wait_for_start() if membership is not None else None
    db = config.database
    writer = store.StoreWriter(database, batch_size=db.batch_size, flush_interval_s=db.flush_interval_s,
                               retry_interval_s=db.retry_interval_s).start()
    pipeline = Pipeline(sources=spec.sources, keys=spec.keys, client=make_client(config), writer=writer,
                        experiment_id=experiment_id,
                        settings=pipeline_settings(config, record_cancelled=spec.record_cancelled),
                        user_events=config.openwhisk.user_events, monitor=open_monitor(config),
                        on_stored=spec.on_stored, planned_total=spec.planned_total,
                        planned_duration_s=spec.planned_duration_s)
    if membership is not None:
        stats = pipeline.stats
        membership.track(lambda: (stats.issued, stats.completed, pipeline.started_epoch_s))
    try:
        with _Signals(pipeline):
            summary = pipeline.run(start_at_s)
    finally:
        writer.close()
    summary["start_epoch_us"] = round(pipeline.start_epoch_s * 1_000_000)
    return summary


def _finish_experiment(database, experiment_id: int, summary: dict, retry_interval_s: float,
                       attempts: int = 30) -> None:
    """Store the start time and the summary, on a fresh connection (the server may have restarted)."""
    backoff = Backoff.fixed(retry_interval_s, max_retries=attempts - 1)
    retry = 0
    while True:
        try:
            experiments.finish_experiment(database, experiment_id, summary, summary["start_epoch_us"])
            return
        except StoreUnavailable as exc:
            retry += 1
            if backoff.gives_up(retry):
                raise
            delay_s = backoff.delay_s(retry)
            log.warning("storing the experiment summary failed (%s); retrying in %.1f s", exc, delay_s)
            time.sleep(delay_s)
