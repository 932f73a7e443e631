"""Calibrated synthetic action: allocate and touch ``mb`` MiB, hold them ``hold_ms`` ms, release.

For the monitor's accuracy tests: the container's memory should rise by about ``mb``
MiB (plus the interpreter's own few MiB) for ``hold_ms``.  Every page is written, so
the memory is really resident; it is an anonymous mapping of its own, unmapped at the end,
so the memory goes back to where it was (a ``bytearray`` would come from the C heap, which
keeps freed memory after the first time: a second short allocation would not be a spike).
Parameters: ``mb`` (int, >= 0), ``hold_ms`` (int, >= 0).  Standard library only.
"""

import mmap
import time

PAGE_BYTES = mmap.PAGESIZE


def main(args):
    try:
        size_mb = int(args.get("mb", 64))
        hold_ms = int(args.get("hold_ms", 500))
    except (TypeError, ValueError) as exc:
        return {"error": f"bad parameter: {exc}"}
    if size_mb < 0 or hold_ms < 0:
        return {"error": f"bad parameters: mb={size_mb} hold_ms={hold_ms} (both >= 0)"}
    size_bytes = size_mb * 1024 * 1024
    t0 = time.perf_counter()
    block = mmap.mmap(-1, size_bytes) if size_bytes else bytearray()
    for offset in range(0, size_bytes, PAGE_BYTES):
        block[offset] = 1
    t1 = time.perf_counter()
    time.sleep(hold_ms / 1000)
    t2 = time.perf_counter()
    touched = sum(block[offset] for offset in range(0, size_bytes, PAGE_BYTES))
    if isinstance(block, mmap.mmap):
        block.close()  # unmapped: the memory is released at once
    t3 = time.perf_counter()
    return {"outputsize": 0, "allocated_bytes": size_mb * 1024 * 1024, "pages_touched": touched,
            "held_ms": (t2 - t1) * 1e3,
            "times": {"extract": 0.0, "transform": (t1 - t0) * 1e3 + (t3 - t2) * 1e3, "load": 0.0}}
