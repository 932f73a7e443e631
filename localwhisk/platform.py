"""The platform: stores, throttles, container pool, invoker, events and notifications, wired.

``Platform.start()`` builds the backend and starts the background threads;
``Platform.stop()`` removes every container. The REST layer (:mod:`localwhisk.http.router`) calls
:meth:`Platform.admit` and :meth:`Platform.invoke`.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from faasload import openwhisk_names

from .activations import ActivationStore
from .backends import Backend, Container
from .config import LocalWhiskConfig
from .entities import Action, ActionStore
from .errors import ApiError
from .events import EventPublisher, NoEvents
from .invoker import Invoker, Job, now_ms
from .invokers import InvokerHost, home_invoker, make_hosts
from .limits import ConcurrencyThrottler, RateThrottler
from .notify import LiveContainer, MonitorWatch
from .pool import ContainerPool
from .users import Identity, UserStore

LOG = logging.getLogger(__name__)


def container_name(instance: int, count: int, namespace: str, action: str) -> str:
    """The name OpenWhisk's invoker ``instance`` gives its ``count``-th container (:mod:`faasload.openwhisk_names`)."""
    return openwhisk_names.container_name(openwhisk_names.container_prefix(instance), count, namespace, action)


def make_backend(config: LocalWhiskConfig, run_dir: Path, instance: int | None = None) -> Backend:
    cfg = config.containers
    if cfg.backend in ("auto", "docker"):
        from faasload import dockerd
        url = cfg.docker_url or dockerd.default_base_url()
        if dockerd.ping(url):
            from .backends.docker import DockerBackend
            from .config import docker_user
            return DockerBackend(url, storage_dir=config.storage.dir, image=cfg.image,
                                 python=cfg.python, start_timeout_s=cfg.start_timeout_s,
                                 instance=config.server.instance if instance is None else instance,
                                 user=docker_user(cfg.docker_user), network=cfg.docker_network,
                                 pids_limit=cfg.pids_limit)
        if cfg.backend == "docker":
            raise RuntimeError(f"containers:backend is docker but no Docker daemon answers at {url}")
        LOG.info("no Docker daemon at %s: using the process backend", url)
    from .backends.process import ProcessBackend
    return ProcessBackend(run_dir, python=cfg.python, use_cgroups=cfg.cgroups, start_timeout_s=cfg.start_timeout_s,
                          systemd_scope=cfg.systemd_scope)


class Platform:
    def __init__(self, config: LocalWhiskConfig, *, api_host: str = ""):
        self.config = config
        self.api_host = api_host
        state = config.state.dir
        state.mkdir(parents=True, exist_ok=True)
        self.users = UserStore(state)
        self.actions = ActionStore(state)
        self.activations = ActivationStore(config.state.max_activations)
        self.rate = RateThrottler()
        self.concurrency = ConcurrencyThrottler()
        self.hosts: list[InvokerHost] = make_hosts(config)
        events = config.events
        self.events = EventPublisher(events.bootstrap_servers, events.topic, config.server.instance) \
            if events.enabled else NoEvents()
        self._count_lock = threading.Lock()
        self._run_dir = state / "run" / str(os.getpid())
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    # the first invoker's parts, as when localwhisk had one invoker
    @property
    def backend(self) -> Backend | None:
        return self.hosts[0].backend

    @property
    def pool(self) -> ContainerPool | None:
        return self.hosts[0].pool

    @property
    def invoker(self) -> Invoker | None:
        return self.hosts[0].invoker

    @property
    def notifier(self):
        return self.hosts[0].notifier

    def start(self) -> None:
        self.users.seed_guest()
        self.config.storage.dir.mkdir(parents=True, exist_ok=True)
        self._run_dir.mkdir(parents=True, exist_ok=True)
        backend: Backend | None = None
        for host in self.hosts:
            # Docker: one backend per invoker (it removes leftovers of its own name prefix); processes: one
            if backend is None or backend.name == "docker":
                backend = make_backend(self.config, self._run_dir / host.name, host.instance)
                if backend.warning:
                    LOG.warning("%s", backend.warning)
            self._start_invoker(host, backend)
        LOG.info("container backend: %s; invokers: %s", backend.name if backend else "none",
                 ", ".join(h.name for h in self.hosts))
        self.events.start()
        watch = MonitorWatch(h.notifier for h in self.hosts)
        if watch.notifiers:  # a restarted monitor gets the live containers again (localwhisk/notify.py)
            watch.tick()  # the monitor there now: told of no container yet, so the first notice is not repeated
            threading.Thread(target=watch.run, args=(self._stopping,), name="monitor-watch", daemon=True).start()

    def _start_invoker(self, host: InvokerHost, backend: Backend) -> None:
        cfg = self.config.containers
        host.backend = backend
        host.pool = ContainerPool(backend, capacity_mb=cfg.user_memory_mb, keepalive_s=cfg.keepalive_s,
                                  pause_grace_s=cfg.pause_grace_s,
                                  notify=functools.partial(self._notify_container, host))
        env = {"FAASLOAD_STORAGE": str(self.config.storage.dir), "__OW_API_HOST": self.api_host}
        host.invoker = Invoker(host.pool, self.activations, container_name=functools.partial(self._container_name, host),
                               container_env=env, notify_activation=host.notifier.activation,
                               publish=functools.partial(self.events.activation, source=host.name),
                               on_done=self._done, max_payload_bytes=self.config.limits.max_payload_bytes,
                               log_wait_s=cfg.log_wait_s, pool_wait_s=self.config.limits.max_action_duration_ms / 1000)
        threading.Thread(target=host.pool.run, name=f"pool-{host.name}", daemon=True).start()
        host.notifier.live_containers = functools.partial(self._live_containers, host)

    def stop(self) -> None:
        self._stopping.set()
        for host in self.hosts:
            if host.pool is not None:
                host.pool.stop()
        self.events.stop()
        for backend in {id(h.backend): h.backend for h in self.hosts if h.backend is not None}.values():
            backend.close()
        shutil.rmtree(self._run_dir, ignore_errors=True)

    # ------------------------------------------------------------------ invocations

    def limits_for(self, identity: Identity) -> tuple[int, int]:
        """(invocations per minute, concurrent invocations) with the namespace's overrides."""
        overrides = self.users.limits_for(identity.namespace)
        return (overrides.get("invocationsPerMinute", self.config.limits.actions_per_minute),
                overrides.get("concurrentInvocations", self.config.limits.concurrent_actions))

    def admit(self, identity: Identity) -> None:
        """The entitlement check of an invocation (before the action is looked up); 429 if refused."""
        per_minute, concurrent = self.limits_for(identity)
        refused = self.rate.check(identity.namespace, per_minute, now_ms())
        if refused:
            self.events.metric("TimedRateLimit", 1, identity)
            raise ApiError(429, refused)
        refused = self.concurrency.acquire(identity.namespace, concurrent)
        if refused:
            self.events.metric("ConcurrentRateLimit", 1, identity)
            raise ApiError(429, refused)

    def release_admission(self, identity: Identity) -> None:
        """Give back a concurrency slot taken by :meth:`admit` for a request that did not invoke."""
        self.concurrency.release(identity.namespace)

    def invoke(self, identity: Identity, action: Action, params: dict, transaction_id: str,
               received_ms: int) -> str:
        """Start an admitted activation; its id."""
        if self.invoker is None:
            raise RuntimeError("the platform is not started")
        activation_id = uuid.uuid4().hex
        invoker = self.hosts[home_invoker(identity.namespace, action.path, len(self.hosts))].invoker
        if invoker is None:
            raise RuntimeError("the platform is not started")
        invoker.submit(Job(activation_id, transaction_id, identity, action, params, received_ms))
        return activation_id

    def _done(self, job: Job) -> None:
        self.concurrency.release(job.identity.namespace)

    def _container_name(self, host: InvokerHost, job: Job) -> str:
        with self._count_lock:
            host.containers_created += 1
            count = host.containers_created
        return container_name(host.instance, count, job.identity.namespace, job.action.name)

    @staticmethod
    def _live_containers(host: InvokerHost) -> list[LiveContainer]:
        pool = host.pool
        return [] if pool is None else [LiveContainer(c.id, c.cgroup, paused) for c, paused in pool.live()]

    def _notify_container(self, host: InvokerHost, action: str, container: Container) -> None:
        host.notifier.container(action, container.id, container.cgroup)

