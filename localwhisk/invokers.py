"""Several invokers in one localwhisk (``invokers: N``), as the invoker hosts of an OpenWhisk cluster.

Invoker ``k`` (0-based) is OpenWhisk's invoker instance ``server:instance + k``: it is named
``invoker<instance + k>`` in the user events' ``source``, names its containers
``wsk<instance + k>_<n>_<namespace>_<action>``, has its own container pool (``containers:
user_memory_mb`` each, as each OpenWhisk invoker has its own user memory) and notifies its own
monitor (``monitor:notification_sockets``, else ``monitor:notification_socket``).

Each action has a *home* invoker, as in OpenWhisk's sharding load balancer: the hash of the
namespace and the action's path, modulo the number of invokers (SHA-256, so the choice is the
same in every process).  localwhisk sends every activation of an action to its home invoker
(OpenWhisk steps to another invoker only when the home one is overloaded; localwhisk's
invokers wait for memory instead, see docs/localwhisk.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .backends import Backend
from .config import LocalWhiskConfig, invoker_names
from .invoker import Invoker
from .notify import MonitorNotifier
from .pool import ContainerPool


def home_invoker(namespace: str, action_path: str, count: int) -> int:
    """The index (0-based) of the invoker that runs ``action_path`` of ``namespace``."""
    digest = hashlib.sha256(f"{namespace}/{action_path}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(eq=False)
class InvokerHost:
    """One invoker: its name, its monitor notifier, and (once started) its backend, pool and invoker."""

    instance: int
    name: str
    notifier: MonitorNotifier
    backend: Backend | None = None
    pool: ContainerPool | None = None
    invoker: Invoker | None = None
    containers_created: int = field(default=0)


def make_hosts(config: LocalWhiskConfig) -> list[InvokerHost]:
    notify = config.monitor
    return [InvokerHost(config.server.instance + k, name,
                        MonitorNotifier(notify.notification_sockets.get(name, notify.notification_socket),
                                        notify.connect_timeout_s))
            for k, name in enumerate(invoker_names(config))]
