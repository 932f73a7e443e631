"""Recovering an experiment whose loader died (SIGKILL, power cut, the OOM killer): docs/injector.md.

A loader that dies leaves its experiment ``running``, with runs ``sent`` whose records it never
fetched.  Whether its loader is alive is told by the experiment's lease
(:class:`loader.storage.experiments.ExperimentLease`, released by PostgreSQL with the dead loader's
connection).  :func:`recover` takes the lease, then:

1. fetches the activation record of every ``sent`` run (the completion tracker, polling until the
   run's final deadline, ``completion:final_deadline_s`` after it was sent), records what it finds
   (and the monitor's samples, when enabled), and marks the rest ``lost`` with the reason;
2. counts, per trace, the planned invocations never sent (the trace's invocations after the last
   one with a row) and those sent or handed out without a row (gaps before it);
3. stores the experiment ``crashed`` with that in ``summary.recovery``.

It uses the experiment's stored configuration (API host, keys, trace directory, completion
settings): the keys and traces must still be where they were.  ``python -m loader --recover NAME``
runs it for one experiment; every start of the loader first runs it for each experiment left
``running`` by a dead loader (:func:`recover_abandoned`).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from faasload.clock import RealClock
from faasload.config import ConfigError, parse
from faasload.errors import Failure
from loader.completion.resource_batches import QueryThreads
from loader.completion.resources import record_completion
from loader.completion.tracker import CompletionTracker, Pending, TrackerSettings
from loader.config import CompletionConfig, InjectionConfig, LoaderConfig, OpenWhiskConfig
from loader.experiment import open_monitor
from loader.injection.traces import list_traces, scan_trace
from loader.plan import PlannedInvocation
from loader.platform.client import make_client
from loader.platform.keys import KeyFileError, UserKey, load_key
from loader.storage import experiments, schema, unfinished
from loader.storage.database import DatabaseConfiguration, open_database
from loader.storage.recorder import DurableSink, Recorder
from loader.storage.rows import ExperimentRow, ExperimentState, RunStatus
from loader.storage.summary import RunStats
from loader.storage.writer import StoreWriter

log = logging.getLogger(__name__)

#: Threads asking the monitor for the recovered completions (each query waits for its answer).
MONITOR_QUERY_THREADS = 4
LOST_REASON = "the loader died before this activation completed; at its recovery: {reason}"
NO_KEY_REASON = "the loader died before this activation completed; no key to fetch its record: {reason}"


class RecoveryError(Failure):
    """The experiment cannot be recovered (unknown, not running, or its loader is alive)."""


@dataclass(frozen=True)
class StoredSettings:
    """What the recovery needs of the experiment's own configuration (else of the current one)."""

    openwhisk: OpenWhiskConfig
    completion: CompletionConfig
    injection: InjectionConfig


def stored_settings(experiment: ExperimentRow, config: LoaderConfig) -> StoredSettings:
    snapshot = experiment.config or {}
    where = f"experiment {experiment.name!r} (experiments.config)"
    sections = []
    for key, section, current in (("openwhisk", OpenWhiskConfig, config.openwhisk),
                                  ("completion", CompletionConfig, config.completion),
                                  ("injection", InjectionConfig, config.injection)):
        try:
            sections.append(parse(section, snapshot[key], where, key))
        except (KeyError, ConfigError) as exc:
            log.warning("%s: its %s section cannot be used (%s): using the current configuration's", where, key, exc)
            sections.append(current)
    return StoredSettings(*sections)


def recover_named(config: LoaderConfig, name: str) -> dict:
    """``--recover NAME``: the summary of the recovered experiment; :class:`RecoveryError` when it cannot be."""
    opened = open_database(config.database)
    try:
        conn = experiments.open_store(opened.config)
        try:
            experiment = experiments.find_experiment(conn, name)
        finally:
            conn.close()
        if experiment is None:
            raise RecoveryError(f"no experiment named {name!r} in {opened.config.describe()}")
        if experiment.state is not ExperimentState.RUNNING:
            raise RecoveryError(f"experiment {name!r} is {experiment.state.value}, not running: nothing to recover")
        return recover(config, opened.config, experiment)
    finally:
        opened.close()


def recover_abandoned(config: LoaderConfig) -> list[dict]:
    """At a start: recover every experiment left ``running`` by a dead loader; their summaries."""
    opened = open_database(config.database)
    summaries = []
    try:
        conn = opened.config.connect()
        try:
            if not experiments.has_dataset(conn):
                return []  # a new database: nothing to recover, and nothing is created before the checks
            schema.migrate(conn)
            abandoned = [e for e in experiments.running_experiments(conn) if experiments.lease_is_free(conn, e.name)]
        finally:
            conn.close()
        for experiment in abandoned:
            log.warning("experiment %r was left running by a loader that died: recovering it", experiment.name)
            try:
                summaries.append(recover(config, opened.config, experiment))
            except Failure as exc:
                log.error("recovering experiment %r failed: %s (retry with python -m loader --recover %s)",
                          experiment.name, exc, experiment.name)
    finally:
        opened.close()
    return summaries


def recover(config: LoaderConfig, database: DatabaseConfiguration, experiment: ExperimentRow) -> dict:
    """Complete the runs ``experiment`` left ``sent``, count what it never sent, store it ``crashed``."""
    try:
        lease = experiments.ExperimentLease(database, experiment.name, exclusive=True)
    except experiments.ExperimentBusy:
        raise RecoveryError(f"experiment {experiment.name!r} is still running: its loader holds its lease") from None
    try:
        settings = stored_settings(experiment, config)
        conn = database.connect()
        try:
            sent = unfinished.sent_runs(conn, experiment.experiment_id)
        finally:
            conn.close()
        log.info("experiment %r: %d runs left sent; fetching their records", experiment.name, len(sent))
        completed, lost = _complete(config, settings, database, experiment, sent)
        conn = database.connect()
        try:
            progress = unfinished.trace_progress(conn, experiment.experiment_id)
            statuses = unfinished.status_counts(conn, experiment.experiment_id)
        finally:
            conn.close()
        recovery = {"recovered_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    "sent_runs": len(sent), "completed": completed, "lost": lost,
                    **_never_sent(experiment, settings, progress)}
        summary = {**(experiment.summary or {}), "state": ExperimentState.CRASHED.value, "statuses": statuses,
                   "recovery": recovery, "experiment": {"id": experiment.experiment_id, "name": experiment.name}}
        experiments.finish_experiment(database, experiment.experiment_id, summary, None, ExperimentState.CRASHED)
    finally:
        lease.release()
    log.warning("experiment %r recovered (crashed): %s", experiment.name, describe(summary))
    return summary


def describe(summary: dict) -> str:
    r = summary["recovery"]
    never = "an unknown number of" if r["never_sent"] is None else str(r["never_sent"])
    return (f"{r['sent_runs']} runs left sent: {r['completed']} completed from their records, {r['lost']} lost; "
            f"{never} planned invocations never sent, {r['unrecorded'] or 0} sent or handed out without a row")


# ---------------------------------------------------------------------- completing the sent runs

def _complete(config: LoaderConfig, settings: StoredSettings, database: DatabaseConfiguration,
              experiment: ExperimentRow, sent: list[unfinished.SentRun]) -> tuple[int, int]:
    """Fetch the records of ``sent`` (until each run's final deadline); (completed, lost)."""
    if not sent:
        return 0, 0
    c = settings.completion
    writer = StoreWriter(database, batch_size=config.database.batch_size, flush_interval_s=config.database.flush_interval_s,
                         retry_interval_s=config.database.retry_interval_s).start()
    recorder = Recorder(DurableSink(writer), experiment.experiment_id, RunStats(0))
    monitor = open_monitor(config)
    client = make_client(settings.openwhisk)
    clock = RealClock(spin_s=0.0)

    # The monitor is asked one activation at a time, on threads of its own: never on the fetch loop.
    queries = QueryThreads(MONITOR_QUERY_THREADS, "recovery-monitor") if monitor is not None else None

    def complete(pending: Pending, record: dict | None, reason: str | None) -> None:  # noqa: D401
        if record is None:
            reason = LOST_REASON.format(reason=reason)
        if queries is None:
            record_completion(recorder, None, pending, record, reason)
        else:
            queries.submit(record_completion, recorder, monitor, pending, record, reason)

    tracker = CompletionTracker(client, TrackerSettings(0.0, c.poll_interval_s, c.record_retry_s, c.final_deadline_s,
                                                        c.fetches_in_flight), complete, clock=clock)
    halt = threading.Event()
    thread = threading.Thread(target=tracker.run, args=(halt,), name="recovery-tracker", daemon=True)
    thread.start()
    try:
        keys: dict[str, UserKey | str] = {}
        start_epoch_us = experiment.start_epoch_us or experiment.started_at_epoch_us or 0
        for run in sent:
            invocation = PlannedInvocation(run.trace_name, run.seq, run.user_name, run.action_name,
                                           run.planned_offset_us, run.input_object, ())
            key = keys.get(run.user_name) or keys.setdefault(run.user_name, _key(settings, run.user_name))
            if isinstance(key, str) or run.activation_id is None:
                reason = key if isinstance(key, str) else "no activation id was stored"
                recorder.completed(invocation, run.activation_id, None, NO_KEY_REASON.format(reason=reason))
                continue
            sent_epoch_s = (start_epoch_us + (run.sent_offset_us or 0)) / 1_000_000
            sent_s = clock.monotonic_s() - max(0.0, clock.epoch_s() - sent_epoch_s)
            tracker.register(invocation, recorder.key(invocation), key, run.activation_id, sent_s)
        while tracker.pending_count:
            time.sleep(0.05)
    finally:
        halt.set()
        thread.join(10.0)
        tracker.close()
        if queries is not None:
            queries.shutdown(wait=True)
        client.close()
        writer.close()
    lost = recorder.stats.statuses.get(RunStatus.LOST, 0)
    return len(sent) - lost, lost


def _key(settings: StoredSettings, user: str) -> UserKey | str:
    try:
        return load_key(settings.openwhisk.authkeys, user)
    except KeyFileError as exc:
        return str(exc)


# ---------------------------------------------------------------------- counting what was never sent

def _never_sent(experiment: ExperimentRow, settings: StoredSettings,
                progress: dict[str, unfinished.TraceProgress]) -> dict:
    """Per trace: planned (from the trace files), never sent (after the last row), without a row (gaps)."""
    if experiment.mode != "injection":
        return {"planned": None, "never_sent": None, "unrecorded": None,
                "note": "a generation resumes from its checkpoint: its next start sends what is missing"}
    tracedir = Path(settings.injection.tracedir)
    if not tracedir.is_dir():
        return {"planned": None, "never_sent": None, "unrecorded": None,
                "note": f"the trace directory {tracedir} is gone: what was never sent cannot be counted"}
    traces, problems = {}, []
    paths, _ = list_traces(tracedir)
    for path in paths:
        scan = scan_trace(path)
        done = progress.get(scan.name.name, unfinished.TraceProgress(0, 0))
        traces[scan.name.name] = {"planned": scan.invocations, "rows": done.rows,
                                  "never_sent": max(0, scan.invocations - done.next_seq),
                                  "unrecorded": done.next_seq - done.rows}
        problems += [str(p) for p in scan.problems]
    result = {"planned": sum(t["planned"] for t in traces.values()),
              "never_sent": sum(t["never_sent"] for t in traces.values()),
              "unrecorded": sum(t["unrecorded"] for t in traces.values()), "traces": traces}
    if problems:
        result["trace_problems"] = problems[:20]
    return result
