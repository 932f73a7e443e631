"""The platform: stores, throttles, container pool, invoker, events and notifications, wired.

``Platform.start()`` builds the backend and starts the background threads;
``Platform.stop()`` removes every container. The REST layer (:mod:`localwhisk.api`) calls
:meth:`Platform.admit` and :meth:`Platform.invoke`.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from .activations import ActivationStore
from .backends import Backend, Container
from .config import LocalWhiskConfig
from .entities import Action, ActionStore
from .errors import ApiError
from .events import EventPublisher, NoEvents
from .invoker import Invoker, Job, now_ms
from .limits import ConcurrencyThrottler, RateThrottler
from .notify import MonitorNotifier
from .pool import ContainerPool
from .users import Identity, UserStore

LOG = logging.getLogger(__name__)


def container_name(instance: int, count: int, namespace: str, action: str) -> str:
    """OpenWhisk's ``ContainerProxy.containerName``: ``wsk<instance>_<n>_<namespace>_<action>``
    where namespace and action keep only letters, digits and ``_`` (other characters dropped)."""
    def keep(text: str) -> str:
        return "".join(c for c in text if c.isalnum() or c == "_")
    return f"wsk{instance}_{count}_{keep(namespace)}_{keep(action)}"


def make_backend(config: LocalWhiskConfig, run_dir: Path) -> Backend:
    cfg = config.containers
    if cfg.backend in ("auto", "docker"):
        from faasload import dockerd
        url = cfg.docker_url or dockerd.default_base_url()
        if dockerd.ping(url):
            from .backends.docker import DockerBackend
            return DockerBackend(url, run_dir, storage_dir=config.storage.dir, image=cfg.image,
                                 python=cfg.python, start_timeout_s=cfg.start_timeout_s,
                                 instance=config.server.instance)
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
        self.notifier = MonitorNotifier(config.monitor.notification_socket, config.monitor.connect_timeout_s)
        events = config.events
        self.events = EventPublisher(events.bootstrap_servers, events.topic, config.server.instance) \
            if events.enabled else NoEvents()
        self.backend: Backend | None = None
        self.pool: ContainerPool | None = None
        self.invoker: Invoker | None = None
        self._count = 0
        self._count_lock = threading.Lock()
        self._run_dir = state / "run" / str(os.getpid())

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.users.seed_guest()
        self.config.storage.dir.mkdir(parents=True, exist_ok=True)
        self._run_dir.mkdir(parents=True, exist_ok=True)
        self.backend = make_backend(self.config, self._run_dir)
        if getattr(self.backend, "warning", None):
            LOG.warning("%s", self.backend.warning)
        LOG.info("container backend: %s", self.backend.name)
        cfg = self.config.containers
        self.pool = ContainerPool(self.backend, capacity_mb=cfg.user_memory_mb, keepalive_s=cfg.keepalive_s,
                                  pause_grace_s=cfg.pause_grace_s, notify=self._notify_container)
        env = {"FAASLOAD_STORAGE": str(self.config.storage.dir), "__OW_API_HOST": self.api_host}
        self.invoker = Invoker(self.pool, self.activations, container_name=self._container_name, container_env=env,
                               notify_activation=self.notifier.activation, publish=self.events.activation,
                               on_done=self._done, max_payload_bytes=self.config.limits.max_payload_bytes,
                               log_wait_s=cfg.log_wait_s, pool_wait_s=self.config.limits.max_action_duration_ms / 1000)
        self.events.start()
        threading.Thread(target=self.pool.run, name="pool", daemon=True).start()

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()
        self.events.stop()
        if self.backend is not None:
            self.backend.close()
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
        activation_id = uuid.uuid4().hex
        self.invoker.submit(Job(activation_id, transaction_id, identity, action, params, received_ms))
        return activation_id

    def _done(self, job: Job) -> None:
        self.concurrency.release(job.identity.namespace)

    def _container_name(self, job: Job) -> str:
        with self._count_lock:
            self._count += 1
            count = self._count
        return container_name(self.config.server.instance, count, job.identity.namespace, job.action.name)

    def _notify_container(self, action: str, container: Container) -> None:
        self.notifier.container(action, container.id, container.cgroup)

