"""Calibrated synthetic action: burn ``cpu_ms`` ms of CPU time, measured with ``time.process_time``.

For the monitor's accuracy tests: the container's cumulative CPU should grow by about
``cpu_ms`` ms (plus the runtime's small overhead).  Single-threaded busy loop; the
result reports the CPU time really consumed and the wall time it took.
Parameter: ``cpu_ms`` (number, >= 0).  Standard library only.
"""

import time


def main(args):
    try:
        cpu_ms = float(args.get("cpu_ms", 100))
    except (TypeError, ValueError) as exc:
        return {"error": f"bad parameter: {exc}"}
    if cpu_ms < 0:
        return {"error": f"bad parameter: cpu_ms={cpu_ms} (>= 0)"}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    target = cpu0 + cpu_ms / 1000
    spins = 0
    while time.process_time() < target:
        for _ in range(1000):
            spins += 1
    wall1, cpu1 = time.perf_counter(), time.process_time()
    return {"outputsize": 0, "cpu_ms": (cpu1 - cpu0) * 1e3, "wall_ms": (wall1 - wall0) * 1e3, "spins": spins,
            "times": {"extract": 0.0, "transform": (wall1 - wall0) * 1e3, "load": 0.0}}
