"""The monitor daemon: wiring of readers, discovery, registry, sampler and the two servers.

Threads: the sampler (its own thread, fine timer slack), one accept thread and a few workers per
socket, and the main thread, which does housekeeping every ``HOUSEKEEPING_PERIOD_S`` until
SIGINT/SIGTERM set the stop flag.  Signals only set the flag; the sockets are removed on the way out.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading

from faasload import dockerd, gc_tuning, sd_notify
from faasload.cli import EXIT_OK
from faasload.clock import Clock, RealClock
from faasload.config import ConfigError
from faasload.monitor_tcp import parse_host_port
from faasload.token_file import TokenFileError, read_token

from .cgroups import make_reader
from .config import MonitorConfig
from .discovery import Discovery, docker_inspector
from .docker_events import DockerEvents, Recogniser, client_factory
from .handlers import Handlers
from .registry import Registry
from .sampler import Sampler
from .servers import MessageServer
from .tcp_server import TcpMeasurementServer

log = logging.getLogger("monitor")

HOUSEKEEPING_PERIOD_S = 0.5
#: The longest wait at start-up for Docker's listing of the containers that already exist.
STARTUP_LISTING_TIMEOUT_S = 5.0
#: Python threads switch every 5 ms by default: a busy server thread would delay the sampler.
SWITCH_INTERVAL_S = 0.0005


class Monitor:
    def __init__(self, config: MonitorConfig, clock: Clock):
        sampling = config.sampling
        self.config = config
        self.clock = clock
        self.reader = make_reader(sampling.cgroup_root)
        inspect = None
        if config.discovery.docker:
            inspect = docker_inspector(config.discovery.docker_url or dockerd.default_base_url())
        self.discovery = Discovery(self.reader, inspect)
        self.registry = Registry(self.reader, self.discovery, clock, resolution_s=sampling.resolution_s,
                                 maxage_s=sampling.maxage_s, retention_s=sampling.retention_s)
        self.sampler = Sampler(self.registry, clock, sampling.resolution_s, sampling.stat_every)
        self.docker_events = _docker_events(config, self.registry, clock)
        self.handlers = Handlers(self.registry, sampling.resolution_s, clock.epoch_s,
                                 attribution_slack_s=config.docker.attribution_slack_s)
        sockets = config.sockets
        self.servers: tuple[MessageServer | TcpMeasurementServer, ...] = tuple(
            MessageServer(name, path, handler, mode=sockets.mode, max_message_bytes=sockets.max_message_bytes,
                          read_timeout_s=sockets.read_timeout_s, max_pending_per_client=sockets.max_pending_per_client,
                          inline=inline)
            for name, path, handler, inline in (
                ("notification", sockets.notification, self.handlers.notification, True),   # answers nothing
                ("measurement", sockets.measurement, self.handlers.query, False)))
        if sockets.measurement_tcp:
            self.servers += (_tcp_server(sockets, self.handlers),)
        self._sampler_stop = threading.Event()
        self._sampler_thread: threading.Thread | None = None

    def start(self) -> None:
        """Sampler, then the Docker listing (the containers that already exist, waited for up to
        ``STARTUP_LISTING_TIMEOUT_S``), then the sockets: from the instant they open, the monitor
        knows every container Docker lists, and queries for activations that started earlier are
        answered ``monitor_down`` (docs/monitor.md, "Restarting the monitor")."""
        log.info("cgroup v%d hierarchy at %s; sampling every %.1f ms", self.reader.version,
                 self.reader.root, self.sampler.resolution_s * 1000)
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        gc_tuning.tune()
        self._sampler_thread = threading.Thread(target=self.sampler.run, args=(self._sampler_stop,),
                                                name="sampler", daemon=True)
        self._sampler_thread.start()
        if self.docker_events is not None:
            self.docker_events.start()
            if self.docker_events.connected.wait(STARTUP_LISTING_TIMEOUT_S):
                log.info("Docker listing at start-up: %d OpenWhisk container(s) already there",
                         len(self.docker_events.followed))
            else:
                log.warning("no Docker listing within %.0f s of start-up: containers that already exist are "
                            "found once the daemon answers", STARTUP_LISTING_TIMEOUT_S)
        self.handlers.watching_since_s = self.clock.epoch_s()
        started = []
        try:
            for server in self.servers:
                server.start()
                started.append(server)
        except Exception:
            for server in started:
                server.stop()
            self._stop_background()
            raise

    def housekeeping(self) -> None:
        self.registry.housekeeping()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self._stop_background()
        handlers, sampler = self.handlers, self.sampler
        log.info("stopped: %d notifications (%d dropped), %d queries (%d bad), %d samples, "
                 "%d missed deadlines", handlers.notifications, handlers.dropped_notifications,
                 handlers.queries, handlers.bad_queries, sampler.samples_taken, sampler.missed_deadlines)

    def _stop_background(self) -> None:
        if self.docker_events is not None:
            self.docker_events.stop()
        self._sampler_stop.set()
        if self._sampler_thread is not None:
            self._sampler_thread.join()
        self.registry.close()


def _tcp_server(sockets, handlers: Handlers) -> TcpMeasurementServer:
    """The measurement socket over TCP (sockets:measurement_tcp), behind the token of sockets:token_file."""
    host, port = parse_host_port(sockets.measurement_tcp, any_port=True)
    try:
        token = read_token(sockets.token_file)
    except TokenFileError as exc:
        raise ConfigError("sockets:token_file", "", str(exc)) from None
    return TcpMeasurementServer(host, port, token, handlers.query, max_message_bytes=sockets.max_message_bytes,
                                read_timeout_s=sockets.read_timeout_s)


def _docker_events(config: MonitorConfig, registry: Registry, clock: Clock) -> DockerEvents | None:
    """Docker-events discovery as ``docker:enabled`` says (auto: only if a daemon answers now)."""
    settings = config.docker
    if settings.enabled is False:
        return None
    base_url = config.discovery.docker_url or dockerd.default_base_url()
    if settings.enabled == "auto" and not dockerd.ping(base_url):
        log.info("no Docker daemon at %s: Docker-events discovery off (docker:enabled is auto)", base_url)
        return None
    log.info("following Docker's container events at %s (names matching %s)", base_url, settings.name_pattern)
    return DockerEvents(registry, client_factory(base_url), clock,
                        recognise=Recogniser(re.compile(settings.name_pattern), tuple(settings.labels)),
                        freezer_period_s=settings.freezer_period_s)


class _StopFlag:
    """Signal handlers only set this flag."""

    def __init__(self):
        self.event = threading.Event()

    def handle_signal(self, signum, _frame) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.event.set()


def _tell_systemd_ready() -> None:
    """The sockets answer: a ``Type=notify`` unit (systemd/faasload-monitor.service) is started."""
    try:
        if sd_notify.notify_ready():
            log.info("told systemd the monitor is ready")
    except OSError as exc:
        log.warning("cannot tell systemd the monitor is ready ($NOTIFY_SOCKET): %s", exc)


def run(config: MonitorConfig) -> int:
    """Run the monitor until SIGINT or SIGTERM; return the exit code."""
    if not config.enabled:
        log.info("monitor disabled in the configuration (enabled: false): exiting")
        return EXIT_OK
    flag = _StopFlag()
    previous = {sig: signal.signal(sig, flag.handle_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # No spin before the sampling deadlines: the sampler is the monitor's only busy thread, so
        # a fine timer slack alone wakes it within ~0.1 ms, and spinning 0.3 ms of every 10 ms tick
        # cost 3% of a core (docs/performance.md).
        monitor = Monitor(config, RealClock(spin_s=0.0))
        monitor.start()
        _tell_systemd_ready()
        try:
            while not flag.event.wait(HOUSEKEEPING_PERIOD_S):
                monitor.housekeeping()
        finally:
            monitor.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK
