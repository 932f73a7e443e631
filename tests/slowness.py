"""How much slower than the development machine the tests run.

``FAASLOAD_TEST_TIME_SCALE`` (default 1) multiplies the deadlines of readiness waits and of
timing assertions that only bound how long something may take, and the allowance for the
runtime's own CPU per activation (tests/test_ground_truth.py): the cgroup v2 guest
(``tests/vm/run.sh``) runs under software emulation, 10-20x slower, and sets it to 10.  What
the monitor measures is never scaled, nor the relative tolerances.
"""

from __future__ import annotations

import os

TIME_SCALE = float(os.environ.get("FAASLOAD_TEST_TIME_SCALE", "1"))


def scaled_s(seconds: float) -> float:
    """A deadline of ``seconds`` on the development machine, here."""
    return seconds * TIME_SCALE
