"""The Azure 2019 importer streams: its memory does not grow with the minutes of the file.

Each function's minute counts are read from the file when its trace is written and never
kept, so a day of 1,440 minutes takes no more memory than one of 90 minutes for the same
functions; per function only a small summary is kept.  The figure for a full published
day (~46,000 functions x 1,440 minutes) is measured by ``bench/workloads_memory.py``
(docs/performance.md).
"""

from __future__ import annotations

import pytest

from tests.workloads_support import ROOT_DIR, run_measured, workload, write_azure2019_day

pytestmark = pytest.mark.slow
FUNCTIONS = 12_000


def test_memory_does_not_grow_with_the_minutes_of_the_file(tmp_path):
    peaks, sizes = {}, {}
    for minutes in (90, 1440):
        day = tmp_path / f"day{minutes}"
        written = write_azure2019_day(day, FUNCTIONS, minutes=minutes, seed=1)
        sizes[minutes] = sum(p.stat().st_size for p in day.iterdir()) / 2**20
        code, peaks[minutes], stderr = run_measured("azure2019", "--trace", day, "--out", tmp_path / f"out{minutes}",
                                                    "--map", "calibrated", cwd=ROOT_DIR)
        assert code == 0, stderr[-2000:]
        assert workload(tmp_path / f"out{minutes}")["counts"]["invocations"] == written["invocations"]
    assert sizes[1440] > sizes[90] + 30  # the file is 30 MiB larger...
    assert peaks[1440] - peaks[90] < 12, (peaks, sizes)  # ...the converter's memory is not
    assert peaks[1440] < 500
    print(f"peak RSS {peaks} MiB for files of {sizes} MiB")
