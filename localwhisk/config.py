"""localwhisk's configuration (``config/localwhisk.yml``), parsed once into typed objects.

Every key, its default, unit and meaning is listed in ``docs/configuration.md``.
Defaults follow OpenWhisk's (``application.conf``, ansible ``group_vars/all``) where
OpenWhisk has one; see docs/localwhisk.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from faasload import logsetup, resources
from faasload.config import ConfigError, load_file, option, section

DEFAULT_PATH = resources.example_config("localwhisk.yml")
#: Debian's ``nobody:nogroup``: the Docker actions' user when localwhisk runs as root.
NOBODY = (65534, 65534)


@dataclass(frozen=True)
class ServerConfig:
    host: str = option("127.0.0.1", doc="address the REST API listens on")
    port: int = option(3233, minimum=0, maximum=65535, doc="TCP port of the REST API (0: any free port; the chosen URL is written to `state:dir`/apihost)")
    instance: int = option(0, minimum=0, doc="controller/invoker instance number: user-event `source` (`controller0`, `invoker0`) and container names (`wsk0_...`)")


@dataclass(frozen=True)
class StateConfig:
    dir: Path = option("~/.local/share/localwhisk", doc="state directory: users and limits (`subjects.json`), actions (`actions.json`), container scratch directories")
    max_activations: int = option(100000, minimum=1, doc="activation records kept in memory (oldest dropped first; records do not survive a restart)")


@dataclass(frozen=True)
class StorageConfig:
    dir: Path = option("~/.local/share/localwhisk/storage", doc="directory given to actions as `$FAASLOAD_STORAGE` (bind-mounted at the same path in Docker containers)")


@dataclass(frozen=True)
class ContainersConfig:
    backend: Literal["auto", "docker", "process"] = option("auto", doc="container backend: `docker` containers, `process`es confined in cgroups, or `auto` (Docker when a daemon answers at `docker_url`)")
    docker_url: str = option("", doc="Docker API URL (`unix:///path`); empty: `$DOCKER_HOST`, else `unix:///var/run/docker.sock`")
    image: str = option("localwhisk/python-runtime:1", doc="name of the runtime image, built locally with `docker import` when missing")
    user_memory_mb: int = option(2048, unit="MB", minimum=128, doc="memory pool shared by all action containers (OpenWhisk's invoker `user-memory`)")
    keepalive_s: float = option(600.0, unit="s", exclusive_minimum=0, doc="idle time after which a warm container is removed (OpenWhisk's `idle-container`, 10 min)")
    pause_grace_s: float = option(0.05, unit="s", minimum=0, doc="idle time after which a warm Docker container is paused (OpenWhisk's `pause-grace`, 50 ms)")
    start_timeout_s: float = option(20.0, unit="s", exclusive_minimum=0, doc="longest wait for a new container's runtime proxy to listen")
    log_wait_s: float = option(2.0, unit="s", minimum=0, doc="longest wait after a /run for the log sentinel on stdout and stderr")
    cgroups: bool = option(True, doc="process backend: confine each container in its own cgroup with the action's memory limit; localwhisk does not start when it cannot (the error names the file and the rule, docs/localwhisk.md); false: plain processes, no memory limit, no measurements")
    systemd_scope: bool = option(True, doc="process backend on cgroup v2 under systemd: when localwhisk's own cgroup is not delegated to it (`Delegate=yes`), ask systemd for a scope `localwhisk-<pid>.scope` with `Delegate=yes` and move into it; false: use its own cgroup as it is (it must hold no other process)")
    python: str = option("/usr/bin/python3", doc="Python interpreter running the runtime proxy and the actions (inside Docker containers too, with /usr bind-mounted)")
    docker_user: str = option("", doc="`UID:GID` (numbers, UID not 0) that Docker actions run as; empty: localwhisk's own when it is not root, else 65534:65534 (nobody). Storage directories actions write to must be writable by it")
    docker_network: str = option("bridge", doc="Docker network of an action annotated `network: true` (OpenWhisk's invoker uses `bridge`); other actions have none (`none`: loopback only)")
    pids_limit: int = option(1024, minimum=1, doc="most processes and threads in one Docker action container (`--pids-limit`)")


@dataclass(frozen=True)
class LimitsConfig:
    actions_per_minute: int = option(60, minimum=1, doc="invocations per namespace per calendar minute (429 beyond; override per namespace with `limits set`)")
    concurrent_actions: int = option(30, minimum=1, doc="invocations of one namespace in flight at once (429 beyond)")
    min_action_memory_mb: int = option(128, unit="MB", minimum=1, doc="smallest action memory limit")
    max_action_memory_mb: int = option(512, unit="MB", minimum=1, doc="largest action memory limit")
    std_action_memory_mb: int = option(256, unit="MB", minimum=1, doc="default action memory limit")
    min_action_duration_ms: int = option(100, unit="ms", minimum=1, doc="smallest action time limit")
    max_action_duration_ms: int = option(300000, unit="ms", minimum=1, doc="largest action time limit")
    std_action_duration_ms: int = option(60000, unit="ms", minimum=1, doc="default action time limit")
    max_action_logs_mb: int = option(10, unit="MB", minimum=0, doc="largest (and default) action log limit")
    max_blocking_wait_ms: int = option(60000, unit="ms", minimum=1, doc="longest wait of a blocking invocation (and largest `timeout` parameter)")
    max_payload_bytes: int = option(1048576, unit="bytes", minimum=1, doc="largest invocation payload (413 beyond, as OpenWhisk's `whisk.activation.payload.max`) and largest action result (a longer one is an application error)")


@dataclass(frozen=True)
class RuntimesConfig:
    python_kinds: list[str] = option(["python:3.10", "python:3.11"], doc="accepted Python kinds (OpenWhisk's runtimes.json)")
    python_default: str = option("python:3.10", doc="the kind `python:default` resolves to")


@dataclass(frozen=True)
class EventsConfig:
    enabled: bool = option(False, doc="publish OpenWhisk user events (Activation, Metric) to Kafka")
    bootstrap_servers: list[str] = option(["127.0.0.1:9092"], doc="Kafka bootstrap servers (`host:port`)")
    topic: str = option("events", doc="topic of the user events (OpenWhisk: `events`)")


@dataclass(frozen=True)
class MonitorNotifyConfig:
    notification_socket: str = option("", doc="the monitor's notification socket (empty: send no notifications)")
    notification_sockets: dict[str, str] = option({}, doc="with several `invokers`, each invoker's own monitor: invoker name (`invoker1`) -> notification socket; an invoker not listed uses `notification_socket`")
    connect_timeout_s: float = option(0.05, unit="s", exclusive_minimum=0, maximum=0.05, doc="longest wait to deliver one notification (dropped beyond) and for the monitor to handle it (an activation start handled later does not reset its kernel peak, docs/monitor.md)")


@dataclass(frozen=True)
class LocalWhiskConfig:
    server: ServerConfig = section(ServerConfig, doc="the REST API")
    invokers: int = option(1, minimum=1, doc="invokers, as the invoker hosts of an OpenWhisk cluster: invoker `k` is `invoker<server:instance + k>` in user events, with its own containers, memory pool and monitor (docs/localwhisk.md)")
    state: StateConfig = section(StateConfig, doc="persistent state")
    storage: StorageConfig = section(StorageConfig, doc="object storage shared with actions")
    containers: ContainersConfig = section(ContainersConfig, doc="action containers")
    limits: LimitsConfig = section(LimitsConfig, doc="system limits (OpenWhisk defaults)")
    runtimes: RuntimesConfig = section(RuntimesConfig, doc="action kinds")
    events: EventsConfig = section(EventsConfig, doc="user events to Kafka")
    monitor: MonitorNotifyConfig = section(MonitorNotifyConfig, doc="notifications to the FaaSLoad monitor")
    logging: dict[str, Any] = option({}, doc="`logging.config.dictConfig` mapping merged over the default (INFO to stderr, syslog priority prefixes when stderr is the journal)", check=logsetup.check)


def invoker_names(config: LocalWhiskConfig) -> list[str]:
    """The names of the configured invokers (``invoker<server:instance + k>``), in order."""
    return [f"invoker{config.server.instance + k}" for k in range(config.invokers)]


def load(path: str | Path = DEFAULT_PATH, overrides: dict[str, Any] | None = None) -> LocalWhiskConfig:
    """Load and validate ``config/localwhisk.yml`` (or ``path``)."""
    config = load_file(LocalWhiskConfig, path, overrides=overrides)
    if config.containers.docker_user:
        try:
            parse_user(config.containers.docker_user)
        except ValueError as exc:
            raise ConfigError(str(path), "containers:docker_user", str(exc)) from None
    names = invoker_names(config)
    for name in config.monitor.notification_sockets:
        if name not in names:
            raise ConfigError(str(path), f"monitor:notification_sockets:{name}",
                              f"no such invoker (the invokers are {', '.join(names)})")
    return config


def parse_user(text: str) -> tuple[int, int]:
    """``UID:GID`` as numbers; raises ValueError for root or anything else."""
    uid_text, sep, gid_text = text.partition(":")
    if not (sep and uid_text.isdigit() and gid_text.isdigit()):
        raise ValueError(f"expected `UID:GID` (numbers), got {text!r}")
    if int(uid_text) == 0:
        raise ValueError("actions must not run as root (UID 0)")
    return int(uid_text), int(gid_text)


def docker_user(configured: str) -> tuple[int, int]:
    """The UID and GID of Docker actions: ``containers:docker_user``, else ours unless we are root."""
    if configured:
        return parse_user(configured)
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    return NOBODY
