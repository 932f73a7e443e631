"""Ground truth for the monitor: the calibrated actions (``actions/calibrated/``) run in a real
localwhisk, measured by a real monitor, fetched by activation id through the loader's client.

``alloc`` allocates and touches ``mb`` MiB and holds them ``hold_ms``; ``burn`` burns ``cpu_ms``
of CPU.  Each call gives a :class:`Measured`: the activation's samples as the loader stores them
and the action's own result.  A short spike (``alloc(16, hold_ms=0)``: 16 MiB released as soon as touched)
is what a sampled peak can miss and the kernel's peak counter catches (``Measured.kernel_peak``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from faasload.monitor_protocol import KernelPeak
from loader.monitor_client import MonitorClient, ResourcesStatus
from tests.slowness import scaled_s

ACTIONS = Path(__file__).resolve().parent.parent / "actions" / "calibrated"
MIB = 1024 * 1024
#: Memory limits of the deployed actions (MB): room for the largest allocation and the runtime.
ALLOC_MEMORY_MB = 512
BURN_MEMORY_MB = 256
#: How long the monitor may take to learn of an activation after its record is final.
BINDING_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class Measured:
    """One activation: the monitor's samples (CPU relative to the first), the kernel's peak and
    the action's result."""

    activation: str
    result: dict[str, Any]
    memory_bytes: tuple[int, ...]
    cpu_ns: tuple[int, ...]
    kernel_peak: KernelPeak | None = None

    @property
    def peak_bytes(self) -> int:
        """The sampled peak: the highest memory sample of the activation."""
        return max(self.memory_bytes)

    @property
    def cpu_used_ns(self) -> int:
        return self.cpu_ns[-1]


class CalibratedActions:
    """``alloc`` and ``burn`` deployed for a new user of the localwhisk ``lw``, whose containers
    the monitor listening on ``measurement_socket`` samples."""

    def __init__(self, lw, measurement_socket: Path | str, user: str = "calibrated"):
        self.lw = lw
        self.auth = lw.create_user(user)
        lw.deploy(self.auth, "alloc", (ACTIONS / "alloc.py").read_text(), memory_mb=ALLOC_MEMORY_MB)
        lw.deploy(self.auth, "burn", (ACTIONS / "burn.py").read_text(), memory_mb=BURN_MEMORY_MB)
        self.client = MonitorClient(measurement_socket, timeout_s=10)

    def alloc(self, mb: int, hold_ms: int) -> Measured:
        return self._invoke("alloc", {"mb": mb, "hold_ms": hold_ms})

    def burn(self, cpu_ms: float) -> Measured:
        return self._invoke("burn", {"cpu_ms": cpu_ms})

    def _invoke(self, action: str, params: dict[str, Any]) -> Measured:
        response = requests.post(self.lw.url(f"actions/{action}?blocking=true"), json=params,
                                 auth=tuple(self.auth.split(":", 1)), timeout=300)
        assert response.status_code == 200, response.text
        record = response.json()
        assert record["response"]["status"] == "success", record
        # The monitor handles notices in its own thread: the query may come before the binding.
        # And the window ends with the first sample after the activation's end, up to one
        # sampling period later: until then it lacks the activation's last CPU.
        end_us = record["end"] * 1000
        deadline_s = time.monotonic() + scaled_s(BINDING_WAIT_S)
        while True:
            answer = self.client.samples_for_activation(record["activationId"], start_s=record["start"] / 1000,
                                                        end_s=record["end"] / 1000)
            closed = answer.status is ResourcesStatus.OK and answer.samples[-1].sampled_at_us >= end_us
            if closed or answer.status not in (ResourcesStatus.UNKNOWN, ResourcesStatus.OK) \
                    or time.monotonic() > deadline_s:
                break
            time.sleep(0.01)
        assert answer.status is ResourcesStatus.OK, answer
        memory = tuple(s.memory_bytes for s in answer.samples if s.memory_bytes is not None)
        cpu = tuple(s.cpu_ns for s in answer.samples if s.cpu_ns is not None)
        assert len(memory) == len(cpu) == len(answer.samples), f"samples not measured: {answer}"
        return Measured(record["activationId"], record["response"]["result"], memory, cpu, answer.kernel_peak)
