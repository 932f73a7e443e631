"""The loader's configuration (``config/loader.yml``), parsed once into typed objects.

Every key, its default, unit and meaning is listed in ``docs/configuration.md``; a
test keeps the document and this schema in agreement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faasload import logsetup, resources
from faasload.config import ConfigError, check_http_url, load_file, option, section
from loader.storage.dsn import mask_dsn

DEFAULT_PATH = resources.example_config("loader.yml")


@dataclass(frozen=True)
class UserEventsConfig:
    bootstrap_servers: list[str] = option(["127.0.0.1:9092"], doc="Kafka bootstrap servers (`host:port`) of OpenWhisk's user events")
    topic: str = option("events", doc="topic of the user events (OpenWhisk's default is `events`)")
    poll_timeout_s: float = option(0.2, unit="s", exclusive_minimum=0, doc="how long one consumer poll waits for records")
    fetch_wait_ms: int = option(10, unit="ms", minimum=1, doc="longest the broker may hold a fetch request before answering (Kafka's `fetch.max.wait.ms`); Apache Kafka answers as soon as a record is there, but a broker that always waits this long (Tansu, the demo's) delays every event by up to it (Kafka's default, 500 ms, made the event-to-row p50 ~120 ms); an idle loader then makes 100 empty fetches a second, under 1% of a core with librdkafka")


@dataclass(frozen=True)
class OpenWhiskConfig:
    apihost: str = option("http://127.0.0.1:3233", doc="base URL of the OpenWhisk API host (scheme, host, port)", check=check_http_url)
    tls_verify: bool = option(True, doc="verify the API host's TLS certificate (turn off for self-signed deployments)")
    authkeys: Path = option("~/.config/faasload/authkeys", doc="directory of per-user key files: file `USER` holds `uuid:key`")
    request_timeout_s: float = option(10.0, unit="s", exclusive_minimum=0, doc="timeout of one REST request")
    invoke_retries: int = option(0, minimum=0, doc="retries of an invocation the platform provably did not process: a connection that could not be opened (nothing was sent), 429, 503 with `Retry-After`; never another 5xx or a connection lost after sending, which may have run the function (0: record the failure, never retry)")
    invoke_retry_backoff_s: float = option(1.0, unit="s", minimum=0, doc="bound of the random wait before the first retry (full jitter), doubled at each further retry up to 32 times it; never shorter than a `Retry-After` from the platform (itself cut to that cap)")
    user_events: UserEventsConfig = section(UserEventsConfig, doc="OpenWhisk user events (Kafka)")


@dataclass(frozen=True)
class FailOnConfig:
    issued_share: float | None = option(None, minimum=0, maximum=1, doc="the run fails (exit 3) when it issued a smaller share of its planned invocations (1: all of them; null: not checked)")
    lateness_p99_ms: float | None = option(None, unit="ms", minimum=0, doc="the run fails when the p99 of its lateness (sent − planned) is above this (null: not checked)")
    lateness_max_ms: float | None = option(None, unit="ms", minimum=0, doc="the run fails when its largest lateness is above this (null: not checked)")
    throttled_share: float | None = option(None, minimum=0, maximum=1, doc="the run fails when a larger share of its planned invocations was throttled (429; 0: none may be; null: not checked)")
    error_share: float | None = option(None, minimum=0, maximum=1, doc="the run fails when a larger share of its planned invocations failed: application, developer or internal errors, HTTP errors other than 429, connection errors (null: not checked)")
    lost_share: float | None = option(None, minimum=0, maximum=1, doc="the run fails when a larger share of its planned invocations was lost (no activation record; null: not checked)")


@dataclass(frozen=True)
class InjectionConfig:
    tracedir: Path = option("~/faasload/traces", doc="directory of injection traces, one file per user-action, named `USER-ACTION-...`")
    sender_processes: int = option(2, minimum=0, doc="processes that send the invocations, apart from the scheduler's, each an event loop with as many requests in flight as due (0: `workers` threads in the scheduler's process instead, a closed loop once every thread waits on the platform; docs/injector.md)")
    max_in_flight: int = option(10000, minimum=1, doc="requests in flight at most, over all sender processes; an invocation due beyond it is sent when an answer frees a place, and its lateness shows the wait")
    workers: int = option(64, minimum=1, doc="with `sender_processes: 0` only: threads that send the invocations, in the scheduler's process")
    incont: str = option("faasload-inputs", doc="storage container of the input objects, passed to actions as `incont`")
    outcont: str = option("faasload-outputs", doc="storage container of the outputs, passed to actions as `outcont`")
    progress_interval_s: float = option(10.0, unit="s", exclusive_minimum=0, doc="interval of the progress line in the log")
    late_threshold_ms: float = option(10.0, unit="ms", minimum=0, doc="an invocation sent more than this after its planned time counts as late in the progress line and summary (its lateness is stored either way)")
    fail_on: FailOnConfig = section(FailOnConfig, doc="thresholds of the verdict on whether the run reproduced its trace (docs/injector.md); one breached makes the loader exit 3")


@dataclass(frozen=True)
class CompletionConfig:
    event_timeout_s: float = option(30.0, unit="s", exclusive_minimum=0, doc="time after sending without a user event before the activation record is polled")
    poll_interval_s: float = option(2.0, unit="s", exclusive_minimum=0, doc="interval between polls of an activation record (404 means not yet)")
    record_retry_s: float = option(0.05, unit="s", exclusive_minimum=0, doc="first backoff when a record is still 404 after its event, doubled up to `poll_interval_s`")
    final_deadline_s: float = option(600.0, unit="s", exclusive_minimum=0, doc="time after sending after which an activation without a record ends with status `lost`")
    fetches_in_flight: int = option(256, minimum=1, doc="activation-record fetches in flight at most, on keep-alive connections of one event loop (the monitor is asked apart, in batches); the record rate is at most this / the fetch's round trip (64 held 10,000 completions/s to 8,200/s on one host), and connections are opened only as needed")
    resources_batch_max: int = option(200, minimum=1, doc="completed activations asked of the monitor in one query, at most")
    resources_batch_wait_s: float = option(0.01, unit="s", exclusive_minimum=0, doc="longest a completed activation waits for others to share its monitor query")
    resources_wait_s: float = option(0.05, unit="s", exclusive_minimum=0, doc="longest a completed activation's row waits for the monitor's answer while the monitor answers quickly; a later answer updates the row (`resources_status` `pending` until then)")
    resources_wait_max_s: float = option(1.0, unit="s", exclusive_minimum=0, doc="longest that wait when the monitor answers slowly: the wait follows 1.5 × the p90 of its recent answer times, between `resources_wait_s` and this (fewer rows written twice on a loaded machine)")
    resources_reask_unknown_s: float = option(0.5, unit="s", minimum=0, doc="an activation the monitor answers `unknown` (it had no notice of it yet: a loaded monitor handles its notices late) is asked once more this long after; 0: never asked again")


@dataclass(frozen=True)
class NbInputsConfig:
    image: int = option(10, minimum=0, doc="number of image inputs (`1.jpg` ... `N.jpg`)")
    audio: int = option(10, minimum=0, doc="number of audio inputs (`1.wav` ... `N.wav`)")
    video: int = option(10, minimum=0, doc="number of video inputs (`1.avi` ... `N.avi`)")


@dataclass(frozen=True)
class GenerationConfig:
    enabled: bool = option(False, doc="run in generator mode (fake traces from the `functions` table) instead of injector mode")
    statedir: Path = option("~/.local/state/faasload/generation", doc="directory of the `.genstate` checkpoints; the newest is resumed")
    nbinputs: NbInputsConfig = section(NbInputsConfig, doc="inputs per input kind")
    seed: int = option(0, minimum=0, doc="seed of the random parameter streams (one independent stream per function)")
    interinvocationtime: float = option(60.0, unit="s", minimum=0, doc="time between two invocations of one function")


@dataclass(frozen=True)
class DatabaseSection:
    dsn: str | None = option(None, doc="libpq connection string or URI; overrides the keys below (a password in it is shown as `***` in logs, messages and `experiments.config`)")
    host: str | None = option(None, doc="server host or socket directory; with `dsn` and `host` both null, an embedded server is started")
    port: int = option(5432, minimum=1, maximum=65535, doc="server port")
    user: str = option("faasload", doc="database user")
    password: str | None = option(None, doc="password (prefer `~/.pgpass`)")
    database: str = option("faasload", doc="database name")
    embedded_datadir: Path | None = option(None, doc="data directory of the embedded server (null: `~/.local/state/faasload/pgdata`; as root `/var/lib/faasload/pgdata`, since the server then runs as an unprivileged user, which cannot reach `/root`)")
    batch_size: int = option(500, minimum=1, doc="rows per write transaction, at most")
    flush_interval_s: float = option(0.002, unit="s", exclusive_minimum=0, doc="longest time a written row waits for others before its transaction (a batch is written as soon as it holds `batch_size` rows)")
    retry_interval_s: float = option(1.0, unit="s", exclusive_minimum=0, doc="wait before retrying a failed write transaction (the batch is kept)")

    def __repr__(self) -> str:  # never show the password, alone or inside the DSN
        shown = dataclasses.replace(self, dsn=mask_dsn(self.dsn) if self.dsn else self.dsn,
                                    password="***" if self.password is not None else None)
        fields = ", ".join(f"{f.name}={getattr(shown, f.name)!r}" for f in dataclasses.fields(self))
        return f"DatabaseSection({fields})"


@dataclass(frozen=True)
class MonitorClientConfig:
    enabled: bool = option(True, doc="fetch each activation's samples from the monitor into `run_samples` (read one per row as `resources`)")
    measurement_socket: Path = option("/run/wdm/meas", doc="the monitor's measurement socket")
    timeout_s: float = option(2.0, unit="s", exclusive_minimum=0, doc="timeout of one query to the monitor")
    endpoints: dict[str, str] = option({}, doc="one monitor per invoker host: invoker name (the user event's `source`, e.g. `invoker0`) -> `unix:///path` or `tcp://host:port` (docs/scale-out.md); empty: the one monitor at `measurement_socket`")
    token_file: Path | None = option(None, doc="file (mode 0600) holding the token the monitors' TCP sockets require (`sockets:token_file` of the monitors); needed by `tcp://` endpoints")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str | None = option(None, doc="name of the experiment in the `experiments` table (null: mode and start time)")
    description: str = option("", doc="free text stored with the experiment")


@dataclass(frozen=True)
class ClusterConfig:
    shard: int = option(1, minimum=1, doc="this loader's shard, 1 to `shards` (`--shard I/N` sets both); it replays the traces of the users that hash to it (docs/scale-out.md)")
    shards: int = option(1, minimum=1, doc="loaders (shards) of the experiment; 1: not sharded")
    host: str = option("", doc="this shard's name in the `shards` table (empty: the host name)")
    start_delay_s: float = option(5.0, unit="s", exclusive_minimum=0, doc="the run starts this long after the last shard joined (on the database server's clock)")
    join_timeout_s: float = option(600.0, unit="s", exclusive_minimum=0, doc="longest wait for every shard to join; beyond it this shard gives up (state `failed`)")
    heartbeat_interval_s: float = option(2.0, unit="s", exclusive_minimum=0, doc="interval of the shard's heartbeat (and progress counts) in the `shards` table")
    dead_after_s: float = option(15.0, unit="s", exclusive_minimum=0, doc="a shard whose heartbeat is older than this is `dead`: its unfinished runs become `lost` when the others finish")
    max_clock_offset_ms: float = option(50.0, unit="ms", minimum=0, doc="refuse to start when this host's clock is further than this from the database server's (synchronise the clocks, e.g. with chrony)")


@dataclass(frozen=True)
class LoaderConfig:
    openwhisk: OpenWhiskConfig = section(OpenWhiskConfig, doc="the OpenWhisk deployment")
    injection: InjectionConfig = section(InjectionConfig, doc="injector mode")
    completion: CompletionConfig = section(CompletionConfig, doc="how activations are completed")
    generation: GenerationConfig = section(GenerationConfig, doc="generator mode")
    database: DatabaseSection = section(DatabaseSection, doc="PostgreSQL")
    monitor: MonitorClientConfig = section(MonitorClientConfig, doc="the resource monitor")
    experiment: ExperimentConfig = section(ExperimentConfig, doc="the experiment record")
    cluster: ClusterConfig = section(ClusterConfig, doc="several loaders (shards) in one experiment (docs/scale-out.md)")
    statedir: Path = option("~/.local/state/faasload", doc="state directory (embedded database, logs of started services)")
    logging: dict[str, Any] = option({}, doc="`logging.config.dictConfig` mapping merged over the default (INFO to stderr, syslog priority prefixes when stderr is the journal); `logging:root:level` switches verbosity", check=logsetup.check)


def load(path: str | Path = DEFAULT_PATH, overrides: dict[str, Any] | None = None) -> LoaderConfig:
    """Load and validate ``config/loader.yml`` (or ``path``)."""
    config = load_file(LoaderConfig, path, overrides=overrides)
    _check_cluster(config, str(path))
    _check_monitor(config.monitor, str(path))
    return config


def _check_cluster(config: LoaderConfig, source: str) -> None:
    cluster = config.cluster
    if cluster.shard > cluster.shards:
        raise ConfigError(source, "cluster:shard", f"shard {cluster.shard} of {cluster.shards}: must be 1 to cluster:shards")
    if cluster.shards == 1:
        return
    if config.generation.enabled:
        raise ConfigError(source, "cluster:shards", "generator mode runs on one loader (cluster:shards must be 1)")
    if not config.experiment.name:
        raise ConfigError(source, "experiment:name", "shards of one experiment need the same experiment:name "
                                                     "(a name from the start time would differ between hosts)")
    if cluster.heartbeat_interval_s >= cluster.dead_after_s:
        raise ConfigError(source, "cluster:dead_after_s", f"must exceed cluster:heartbeat_interval_s "
                                                          f"({cluster.heartbeat_interval_s:g} s)")


def _check_monitor(monitor: MonitorClientConfig, source: str) -> None:
    from loader.monitor_endpoints import EndpointError, parse_endpoint
    needs_token = False
    for invoker, url in monitor.endpoints.items():
        try:
            needs_token |= parse_endpoint(url).tcp
        except EndpointError as exc:
            raise ConfigError(source, f"monitor:endpoints:{invoker}", str(exc)) from None
    if needs_token and monitor.enabled and monitor.token_file is None:
        raise ConfigError(source, "monitor:token_file", "tcp:// endpoints need the monitors' shared token file")


def check_directories(config: LoaderConfig, source: str | Path, *, mode: str) -> None:
    """Check, before anything runs, the directories ``mode`` (``injection``/``generation``) needs."""
    needed = [("openwhisk:authkeys", config.openwhisk.authkeys)]
    if mode == "injection":
        needed.append(("injection:tracedir", config.injection.tracedir))
    for key, path in needed:
        if not path.is_dir():
            raise ConfigError(str(source), key, f"directory does not exist: {path}")


__all__ = ["LoaderConfig", "ConfigError", "load", "check_directories", "DEFAULT_PATH"]
