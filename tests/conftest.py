"""Test harness: real services, started once per session and stopped by pid.

* ``pg_cluster`` / ``database``: a throwaway PostgreSQL cluster (pip-installed binaries),
  one fresh database per test, as a :class:`loader.DatabaseConfiguration`.
* ``kafka_broker``: a Tansu broker (Apache-Kafka protocol) on a free port;
  ``kafka_consumer_settings`` are the fast consumer-group settings it needs.
* ``cgroups``: creates cgroups under this process's own cgroup, removed afterwards.
* ``docker_daemon``: a reachable Docker daemon (``$DOCKER_HOST``, else one started here);
  ``docker_daemon_by_driver(driver)``: one with the ``cgroupfs`` or ``systemd`` cgroup driver
  (the session's when it has it, else one started here).

Tests that need root, cgroups or Docker skip with the reason when those are missing.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from faasload import dockerd, embedded_pg, tansu  # noqa: E402
from faasload.procs import ServiceError  # noqa: E402
from loader.storage.database import DatabaseConfiguration, create_database  # noqa: E402
from tests import cgroup_helpers  # noqa: E402

#: Every module of tests/fixtures/ (localwhisk, monitor, ...) is a plugin of fixtures.
pytest_plugins = sorted(f"tests.fixtures.{p.stem}" for p in (ROOT / "tests" / "fixtures").glob("*.py")
                        if p.stem != "__init__")

#: kafka-python consumer settings for the Tansu broker: it holds a JoinGroup request for half the
#: session timeout, so kafka-python's default 45 s costs ~23 s per join (measured; 2 s joins in ~1 s).
KAFKA_CONSUMER_SETTINGS = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}


def _scratch_dir(prefix: str) -> Path:
    """A world-readable scratch directory under /tmp (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def scratch_root():
    path = _scratch_dir("faasload-tests-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster(scratch_root):
    try:
        server = embedded_pg.start_cluster(scratch_root / "pgdata", durable=False)
    except ServiceError as exc:
        pytest.fail(f"cannot start the test PostgreSQL cluster: {exc}")
    yield server
    server.stop(mode="immediate")


@pytest.fixture
def database(pg_cluster) -> DatabaseConfiguration:
    """A fresh, empty database on the session cluster."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = DatabaseConfiguration(user=pg_cluster.user, host=pg_cluster.host, port=pg_cluster.port,
                                  database="postgres")
    create_database(admin, name)
    return DatabaseConfiguration(user=pg_cluster.user, host=pg_cluster.host, port=pg_cluster.port,
                                 database=name)


@pytest.fixture(scope="session")
def kafka_broker(scratch_root):
    try:
        broker = tansu.start(scratch_root / "tansu")
    except ServiceError as exc:
        pytest.fail(f"cannot start the Kafka-protocol broker: {exc}")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_consumer_settings():
    return dict(KAFKA_CONSUMER_SETTINGS)


@pytest.fixture
def cgroups():
    """Factory of cgroups nested under this process's cgroup (v1 memory+cpuacct, or v2)."""
    reason = cgroup_helpers.unavailable_reason()
    if reason:
        pytest.skip(reason)
    factory = cgroup_helpers.CgroupFactory()
    yield factory
    factory.cleanup()


@pytest.fixture(scope="session")
def docker_daemon(scratch_root):
    """The base URL of a reachable Docker daemon."""
    base_url = dockerd.default_base_url()
    if dockerd.ping(base_url):
        yield base_url
        return
    if os.environ.get("FAASLOAD_TEST_START_DOCKERD", "1") == "0":
        pytest.skip(f"no Docker daemon at {base_url} and starting one is disabled")
    try:
        daemon = dockerd.start(Path("/tmp") / f"faasload-dockerd-{os.getpid()}")
    except ServiceError as exc:
        pytest.skip(f"no Docker daemon at {base_url} and none could be started: {exc}")
    yield daemon.base_url
    daemon.stop()


@pytest.fixture(scope="session")
def docker_daemon_by_driver(docker_daemon, scratch_root):
    """``(driver) -> base URL`` of a daemon with that cgroup driver; skips when none can run.

    The systemd driver needs systemd as init; the cgroupfs one works everywhere (on a pure
    cgroup v2 host, at ``/sys/fs/cgroup/docker/<id>``)."""
    started: dict[str, dockerd.Dockerd] = {}
    default_driver = dockerd.cgroup_driver(docker_daemon)

    def by_driver(driver: str) -> str:
        if driver == default_driver:
            return docker_daemon
        if driver not in started:
            if driver == "systemd" and not Path("/run/systemd/system").is_dir():
                pytest.skip("Docker's systemd cgroup driver needs systemd as init")
            try:
                started[driver] = dockerd.start(scratch_root / f"dockerd-{driver}", cgroup_driver=driver)
            except ServiceError as exc:
                pytest.skip(f"no Docker daemon with the {driver} cgroup driver: {exc}")
        return started[driver].base_url

    yield by_driver
    for daemon in started.values():
        daemon.stop()
