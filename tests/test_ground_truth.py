"""Ground truth: what the monitor records for the calibrated actions, against what they did.

On the host's cgroup version and in the cgroup v2 guest (``tests/vm/``), with localwhisk's
process backend and with Docker (cgroupfs driver here, systemd driver in the guest):

* allocating and touching N MiB (64, 256) gives a sampled peak within 2% of N above the peak
  of an idle activation of the same warm container;
* burning C ms of CPU (100, 1000) gives, above the CPU of a 1 ms burn, the CPU the action burnt
  more within 2% + 1 ms (the action measures what it burns itself: at least C, a loop iteration
  more).

* a spike of 16 MiB held 0 ms (``alloc(16, hold_ms=0)``: it lasts as long as faulting its pages
  in takes, from a millisecond on a fast host to tens of ms here) is caught by the kernel's peak
  (``kernel_peak``): at least 16 MiB above the lowest sample of the activation, within 2%, where
  the sampled peak mostly misses it.  On v1 and on v2 from Linux 6.12 the counter is reset for the
  activation (``activation``: then also at most 16 MiB + 2% + 1 MiB above the sample before it);
  in the guest (Linux 6.1) it is the container's peak since its creation (``since_creation``), so
  the spikes run in a container of their own that never held more.

The baseline burns too: besides the action, an activation costs the runtime some CPU (HTTP,
JSON, pipes: about 0.6 ms here), a little more when the action was busy than when it returned
at once (0.2 ms here).  Each figure comes from the least recorded of a few repetitions: noise
only adds.  In the guest (software emulation) that runtime CPU is ten to twenty
times larger and noisier (9-12 ms, sometimes 30: the emulator translating code and the host
preempting a virtual CPU whose guest clock keeps running are charged to whatever the guest ran
then), while the monitor's figure stays within 1 ms of the kernel's own counter; so the 1 ms
allowed for the runtime is multiplied by the tests' time scale (tests/slowness.py) there.
Run with ``-s`` to print the figures.
"""

from __future__ import annotations

import mmap
import os

import pytest

from faasload.monitor_protocol import PeakSource
from tests import cgroup_helpers
from tests.fixtures.localwhisk import LocalWhiskFactory
from tests.fixtures.monitor import MonitorFactory
from tests.ground_truth import MIB, CalibratedActions
from tests.slowness import TIME_SCALE

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(600)]

HOLD_MS = 300
ALLOCATIONS_MIB = (64, 256)
BURNS_MS = (100, 1000)
TOLERANCE = 0.02
#: Allowance for the runtime's own CPU varying between activations (1 ms on a real host).
CPU_SLACK_MS = 1.0 * TIME_SCALE
CPU_REPETITIONS = 5
REFERENCE_BURN_MS = 1
SPIKE_MIB = 16
SPIKE_REPETITIONS = 5
#: What the runtime may add to an activation's kernel peak besides the allocation (its request
#: and response buffers).
SPIKE_RUNTIME_SLACK_MIB = 1.0


@pytest.fixture(scope="module", params=["process", "docker"])
def calibrated(request):
    """The calibrated actions in one localwhisk per backend, measured by one monitor, warm."""
    backend = request.param
    options = {}
    cgroups = None
    if backend == "process":
        reason = cgroup_helpers.unavailable_reason()
        if reason:
            pytest.skip(reason)
        if cgroup_helpers.needs_own_cgroup():
            cgroups = cgroup_helpers.CgroupFactory()
            options["command_prefix"] = cgroup_helpers.join_command(cgroups.create()[""])
    monitors = MonitorFactory()
    platforms = LocalWhiskFactory(request)
    try:
        monitor = monitors.start()
        lw = platforms.start(backend=backend, notification_socket=str(monitor.notification_socket), **options)
        actions = CalibratedActions(lw, monitor.measurement_socket)
        actions.alloc(0, 0)  # cold starts, not measured
        actions.burn(REFERENCE_BURN_MS)
        yield backend, actions
    finally:
        platforms.close()
        monitors.cleanup()
        if cgroups:
            cgroups.cleanup()


@pytest.mark.parametrize("mib", ALLOCATIONS_MIB)
def test_sampled_peak_is_the_allocation_above_the_idle_peak(calibrated, mib):
    backend, actions = calibrated
    idle = actions.alloc(0, HOLD_MS)
    loaded = actions.alloc(mib, HOLD_MS)
    assert loaded.result["pages_touched"] == mib * MIB // mmap.PAGESIZE
    grown_mib = (loaded.peak_bytes - idle.peak_bytes) / MIB
    print(f"\n[{backend}, cgroup v{cgroup_helpers.version()}] alloc {mib} MiB: sampled peak "
          f"{loaded.peak_bytes / MIB:.2f} MiB = idle peak {idle.peak_bytes / MIB:.2f} + {grown_mib:.2f} MiB "
          f"({len(loaded.memory_bytes)} samples)")
    assert abs(grown_mib - mib) <= TOLERANCE * mib


@pytest.mark.parametrize("cpu_ms", BURNS_MS)
def test_cpu_is_the_burn_above_a_short_burn(calibrated, cpu_ms):
    backend, actions = calibrated
    reference = least_inflated(actions, REFERENCE_BURN_MS)
    loaded = least_inflated(actions, cpu_ms)
    used_ms = (loaded.cpu_used_ns - reference.cpu_used_ns) / 1e6
    burnt_ms = loaded.result["cpu_ms"] - reference.result["cpu_ms"]
    print(f"\n[{backend}, cgroup v{cgroup_helpers.version()}] burn {cpu_ms} ms: {used_ms:.2f} ms recorded above "
          f"a {REFERENCE_BURN_MS} ms burn ({reference.cpu_used_ns / 1e6:.2f} ms), for {burnt_ms:.2f} ms burnt more")
    assert abs(used_ms - burnt_ms) <= TOLERANCE * cpu_ms + CPU_SLACK_MS


def least_inflated(actions, cpu_ms):
    """Of a few burns of ``cpu_ms``, the one with the least CPU recorded (an emulator's hiccup
    inflates the runtime's part or the action's own loop, never deflates them)."""
    burns = [actions.burn(cpu_ms) for _ in range(CPU_REPETITIONS)]
    for burn in burns:
        assert burn.result["cpu_ms"] >= cpu_ms, burn.result
    return min(burns, key=lambda m: m.cpu_used_ns)


def resettable_v2() -> bool:
    """Whether this kernel resets cgroup v2 ``memory.peak`` per open file (Linux 6.12)."""
    release = tuple(int(part) for part in os.uname().release.split("-")[0].split(".")[:2])
    return release >= (6, 12)


def test_a_short_spike_is_caught_by_the_kernel_peak(calibrated):
    backend, actions = calibrated
    spiky = CalibratedActions(actions.lw, actions.client.socket_path, user="spiky")  # containers of its own
    spiky.alloc(0, 0)  # cold start, not measured
    version = cgroup_helpers.version()
    expected = PeakSource.ACTIVATION if version == 1 or resettable_v2() else PeakSource.SINCE_CREATION
    sampled_mib, kernel_mib, kernel_above_lowest_mib, lasted_ms = [], [], [], []
    for _ in range(SPIKE_REPETITIONS):
        spike = spiky.alloc(SPIKE_MIB, 0)
        assert spike.result["pages_touched"] == SPIKE_MIB * MIB // mmap.PAGESIZE
        assert spike.kernel_peak is not None and spike.kernel_peak.memory_bytes is not None, spike
        assert spike.kernel_peak.source is expected
        before, lowest = spike.memory_bytes[0], min(spike.memory_bytes)
        sampled_mib.append((spike.peak_bytes - before) / MIB)
        kernel_mib.append((spike.kernel_peak.memory_bytes - before) / MIB)
        kernel_above_lowest_mib.append((spike.kernel_peak.memory_bytes - lowest) / MIB)
        lasted_ms.append(spike.result["times"]["transform"] + spike.result["held_ms"])
    print(f"\n[{backend}, cgroup v{version}] {SPIKE_MIB} MiB spike (held 0 ms), above the sample before, over "
          f"{SPIKE_REPETITIONS} activations: sampled peak {', '.join(f'{m:+.2f}' for m in sampled_mib)} MiB; "
          f"kernel peak ({expected.value}) {', '.join(f'{m:+.2f}' for m in kernel_mib)} MiB; the allocation "
          f"lasted {', '.join(f'{t:.1f}' for t in lasted_ms)} ms (first touch to release)")
    for grown_mib, above_lowest_mib in zip(kernel_mib, kernel_above_lowest_mib):
        # the lower bound from the lowest sample: once in CI the sample before stood 1.6 MiB above
        # the usage the spike grew from (the runtime released memory in between)
        assert above_lowest_mib >= (1 - TOLERANCE) * SPIKE_MIB
        if expected is PeakSource.ACTIVATION:
            assert grown_mib <= (1 + TOLERANCE) * SPIKE_MIB + SPIKE_RUNTIME_SLACK_MIB
