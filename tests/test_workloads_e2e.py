"""Imported workloads end to end: convert the Azure 2019 sample, deploy its manifest, validate, inject into
localwhisk (real HTTP, Kafka-protocol broker, PostgreSQL), and find the source's per-minute counts in ``runs``."""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys

import pytest
import yaml

from tests.injector_support import ECHO_ACTION, ROOT, Setup
from tests.workloads_support import AZURE2019, convert, mapping, read_trace, source_counts

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
#: 3 minutes at 1/20 of the time: 9 s of injection
TIME_SCALE = "0.05"
SCALED_MINUTE_US = 3_000_000


@pytest.fixture
def setup(tmp_path, localwhisk_factory, kafka_broker, database):
    """A localwhisk of its own: the users' names are stable, so two tests would create the same users."""
    platform = localwhisk_factory.start(kafka_bootstrap=kafka_broker.bootstrap)
    return Setup(tmp_path, platform, database, kafka_broker.bootstrap)


def moderate_functions(count: int = 8, longest_ms: float = float("inf")) -> list[str]:
    """Functions of the sample with 3 to 40 invocations in minutes 540-542 and no duration above
    ``longest_ms`` (a short, light test)."""
    with open(AZURE2019 / "durations.csv", newline="") as stream:
        longest = {r["HashFunction"]: float(r["percentile_Average_100"]) for r in csv.DictReader(stream)}
    chosen = [h for h, counts in sorted(source_counts().items())
              if 3 <= sum(counts[:3]) <= 40 and longest[h] <= longest_ms]
    return chosen[:count]


def convert_for_injection(capsys, setup: Setup, *extra: str, longest_ms: float = float("inf")):
    out = setup.root / "workload"
    (setup.root / "echo.py").write_text(ECHO_ACTION)
    manifest = setup.root / "actions.yml"
    manifest.write_text(yaml.safe_dump({"packages": {"default": {"actions": {
        name: {"function": "echo.py", "runtime": "python:3.11", "limits": {"memorySize": 128, "timeout": 60000},
               "annotations": {"profile": profile}}
        for name, profile in (("quick", {"duration_ms": 10, "memory_mb": 30}),
                              ("steady", {"duration_ms": 1000, "memory_mb": 120}))}}}}))
    functions = moderate_functions(longest_ms=longest_ms)
    code, _, stderr = convert(capsys, "azure2019", "--trace", AZURE2019, "--out", out, "--seed", 1,
                                   "--minutes", "540:543", "--time-scale", TIME_SCALE, "--manifest", manifest,
                                   *(a for h in functions for a in ("--function", h)), *extra)
    assert code == 0, stderr
    rows = mapping(out)
    assert len(rows) == len(functions)
    for user in sorted({r["user"] for r in rows}):
        setup.user(user, {})
    setup.write_config(injection={"tracedir": str(out / "traces"), "workers": 8})
    deployed = subprocess.run([sys.executable, "-m", "loader.deploy", "--config", str(setup.config_path), "actions",
                               "--manifest", str(out / "manifest.yml")], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, check=False)
    assert deployed.returncode == 0, deployed.stderr
    validate = setup.run_loader("--validate")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert validate.stdout.startswith(f"ok: {len(rows)} traces, ")
    return out, rows


def test_injected_runs_have_the_sources_per_minute_counts(capsys, setup):
    out, rows = convert_for_injection(capsys, setup)
    result = setup.run_loader(timeout_s=180)
    assert result.returncode == 0, result.stderr[-3000:]
    source = source_counts()
    runs = setup.query("SELECT trace_name, planned_offset_us, status FROM runs ORDER BY trace_name, seq")
    assert {status for _, _, status in runs} == {"success"}
    for row in rows:
        planned = [offset for trace, offset, _ in runs if trace == row["trace_file"]]
        assert planned == [o for o, _, _ in read_trace(out / "traces" / row["trace_file"])]
        per_minute = [0, 0, 0]
        for offset in planned:
            per_minute[offset // SCALED_MINUTE_US] += 1
        assert per_minute == source[row["source_function"]][:3], row["trace_file"]
    assert len(runs) == sum(sum(source[r["source_function"]][:3]) for r in rows)


def test_calibrated_replay_runs_for_the_requested_duration(capsys, setup):
    _, rows = convert_for_injection(capsys, setup, "--map", "calibrated", "--max-memory-mb", "256",
                                      "--cpu-share", "0.2", longest_ms=1500)
    assert all(r["action"].startswith("cal_") for r in rows)
    result = setup.run_loader(timeout_s=180)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = setup.query("""SELECT r.status, r.duration_ms, r.cold_start, p.value::float
                          FROM runs r JOIN parameters p USING (run_id) WHERE p.name = 'duration_ms'""")
    assert runs and {status for status, *_ in runs} == {"success"}
    warm = [(recorded, requested) for _, recorded, cold, requested in runs if not cold]
    assert all(recorded >= requested - 1 for recorded, requested in warm), warm
    assert statistics.median(recorded - requested for recorded, requested in warm) < 50, warm
