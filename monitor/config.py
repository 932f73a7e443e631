"""The monitor's configuration (``config/monitor.yml``), parsed once into typed objects.

Every key, its default, unit and meaning is listed in ``docs/configuration.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from faasload import logsetup, resources
from faasload.config import ConfigError, load_file, option, section
from faasload.monitor_tcp import parse_host_port
from faasload.openwhisk_names import DEFAULT_NAME_PATTERN

DEFAULT_PATH = resources.example_config("monitor.yml")


@dataclass(frozen=True)
class SocketsConfig:
    notification: Path = option("/run/wdm/notif", doc="UNIX socket receiving container and activation notices")
    measurement: Path = option("/run/wdm/meas", doc="UNIX socket answering measurement queries")
    mode: int = option(0o660, minimum=0, maximum=0o777, doc="permission bits of both sockets (octal in YAML: `0660`)")
    max_message_bytes: int = option(65536, minimum=64, doc="longest accepted message; longer ones are logged and dropped")
    read_timeout_s: float = option(2.0, unit="s", exclusive_minimum=0, doc="a connection without a complete message this long after it was accepted is dropped (idle connections hold no worker meanwhile)")
    max_pending_per_client: int = option(64, minimum=1, doc="connections one client process (by pid) may hold open without a complete message; opening more closes its oldest")
    measurement_tcp: str = option("", doc="also answer measurement queries over TCP at `HOST:PORT` (loaders on other hosts, docs/scale-out.md; port 0: any free port, named in the log); empty: UNIX socket only")
    token_file: Path | None = option(None, doc="file (mode 0600) holding the token a TCP client must send first (`python -m faasload.token_file PATH` writes one); required with `measurement_tcp`")


@dataclass(frozen=True)
class SamplingConfig:
    resolution_s: float = option(0.01, unit="s", exclusive_minimum=0, doc="period between two samples of a container")
    stat_every: int = option(10, minimum=1, doc="read `memory.stat` (RSS + mapped file) on a container's first sample and every N-th after: it costs 10-100x the usage and CPU files; the other samples have `rss_mapped: null`")
    maxage_s: float = option(600.0, unit="s", exclusive_minimum=0, doc="age after which samples of a live container are dropped (bounds the per-container buffer)")
    retention_s: float = option(300.0, unit="s", minimum=0, doc="how long a removed container's samples stay queryable after `rm`")
    cgroup_root: Path = option("/sys/fs/cgroup", doc="mount point of the cgroup hierarchy (v1 controllers or v2 unified)")


@dataclass(frozen=True)
class DiscoveryConfig:
    docker: bool = option(True, doc="ask the Docker daemon for the cgroup of containers announced without a `cgroup` path (else path conventions only)")
    docker_url: str = option("", doc="Docker API address, e.g. `unix:///run/docker.sock`; empty: `$DOCKER_HOST`, else `unix:///var/run/docker.sock`")


@dataclass(frozen=True)
class DockerConfig:
    enabled: bool | Literal["auto"] = option("auto", doc="follow Docker's container events to find OpenWhisk action containers without notifications (docs/monitor.md): `auto` = when a daemon answers at `discovery:docker_url` at start-up; `true` = always, retrying until one answers; `false` = never")
    name_pattern: str = option(DEFAULT_NAME_PATTERN, doc="regular expression (Python `re.search`) of the names of action containers (OpenWhisk's invoker names them `wsk<invoker>_<n>_<namespace>_<action>`)")
    labels: list[str] = option([], doc="labels marking action containers too: `key` (any value) or `key=value`")
    freezer_period_s: float = option(0.01, unit="s", exclusive_minimum=0, doc="how often the freezer state of followed containers is read (the invoker's `runc pause` sends no Docker event)")
    attribution_slack_s: float = option(0.002, unit="s", minimum=0, doc="tolerance when matching an activation's [start, end] (whole ms) to a container's running stretch; larger only makes answers `ambiguous` more often")


@dataclass(frozen=True)
class MonitorConfig:
    enabled: bool = option(True, doc="run the monitor (false: `python -m monitor` exits at once, for units that are always installed)")
    sockets: SocketsConfig = section(SocketsConfig, doc="the two UNIX sockets")
    sampling: SamplingConfig = section(SamplingConfig, doc="cgroup sampling")
    discovery: DiscoveryConfig = section(DiscoveryConfig, doc="finding a container's cgroup")
    docker: DockerConfig = section(DockerConfig, doc="Docker-events discovery and attribution without notices (issue 8)")
    logging: dict[str, Any] = option({}, doc="`logging.config.dictConfig` mapping merged over the default (INFO to stderr, syslog priority prefixes when stderr is the journal); `logging:root:level` switches verbosity", check=logsetup.check)


def load(path: str | Path = DEFAULT_PATH, overrides: dict[str, Any] | None = None) -> MonitorConfig:
    """Load and validate ``config/monitor.yml`` (or ``path``)."""
    config = load_file(MonitorConfig, path, overrides=overrides)
    _check_docker(config.docker, str(path))
    _check_tcp(config.sockets, str(path))
    return config


def _check_tcp(sockets: SocketsConfig, source: str) -> None:
    if not sockets.measurement_tcp:
        return
    try:
        parse_host_port(sockets.measurement_tcp, any_port=True)
    except ValueError as exc:
        raise ConfigError(source, "sockets:measurement_tcp", str(exc)) from None
    if sockets.token_file is None:
        raise ConfigError(source, "sockets:token_file", "required with sockets:measurement_tcp: the monitor answers "
                                                        "TCP clients only with a shared token")


def _check_docker(docker: DockerConfig, source: str) -> None:
    try:
        re.compile(docker.name_pattern)
    except re.error as exc:
        raise ConfigError(source, "docker:name_pattern", f"not a valid regular expression: {exc}") from None
    for i, label in enumerate(docker.labels):
        if not label.partition("=")[0]:
            raise ConfigError(source, f"docker:labels[{i}]", f"expected `key` or `key=value`, got {label!r}")
