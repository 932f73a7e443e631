"""Unit tests of the mapping, limits, naming and sampling of loader.workloads."""

from __future__ import annotations

import json

import pytest
import yaml

from loader.workloads import conversion, limits, mapping, naming, sampling
from loader.workloads.limits import PeakConcurrency, PlatformLimits, UserLoad
from loader.workloads.mapping import MapMode
from loader.workloads.records import Percentiles, Profile, SourceId, TraceFunction, WorkloadError
from tests.workloads_support import AZURE2019, convert, read_trace
from tests.workloads_support import mapping as read_mapping


def function(name: str, duration_ms: float | None, memory_mb: float | None, invocations: int = 1,
             action: str | None = None) -> TraceFunction:
    profile = Profile(Percentiles.constant(duration_ms) if duration_ms else None,
                      Percentiles.constant(memory_mb) if memory_mb else None)
    return TraceFunction(SourceId("owner_" + name, "app_" + name, name), 0, "http", profile, invocations, action,
                         where=f"trace:{name}")


def manifest(tmp_path, profiles: dict[str, dict | None]):
    (tmp_path / "a.py").write_text("def main(args):\n    return {}\n")
    actions = {}
    for name, profile in profiles.items():
        actions[name] = {"function": "a.py", "runtime": "python:3.11", "limits": {"memorySize": 256}}
        if profile is not None:
            actions[name]["annotations"] = {"profile": profile}
    path = tmp_path / "manifest.yml"
    path.write_text(yaml.safe_dump({"packages": {"default": {"actions": actions}}}, sort_keys=False))
    return path


def test_nearest_is_closest_in_log_duration_and_memory(tmp_path):
    path = manifest(tmp_path, {"small": {"duration_ms": 10, "memory_mb": 30}, "slow": {"duration_ms": 1000,
                                                                                        "memory_mb": 30},
                               "big": {"duration_ms": 10, "memory_mb": 400}, "unprofiled": None})
    targets = mapping.read_targets(path)
    functions = [function("a", 12, 25), function("b", 5000, 40), function("c", 8, 300), function("d", 900, None)]
    chosen = mapping.assign(functions, MapMode.NEAREST, targets, path, pytest.fail)
    assert [t.name for t, _ in chosen] == ["small", "slow", "big", "slow"]
    assert chosen[3][1] == pytest.approx(abs(__import__("math").log(900 / 1000)))


def test_one_to_one_is_injective_with_least_total_distance_and_falls_back(tmp_path):
    path = manifest(tmp_path, {"x": {"duration_ms": 10, "memory_mb": 30}, "y": {"duration_ms": 20, "memory_mb": 30},
                               "z": {"duration_ms": 5000, "memory_mb": 300}})
    targets = mapping.read_targets(path)
    functions = [function("a", 11, 30), function("b", 12, 30)]  # both nearest to x
    nearest = mapping.assign(functions, MapMode.NEAREST, targets, path, pytest.fail)
    assert [t.name for t, _ in nearest] == ["x", "x"]
    one = mapping.assign(functions, MapMode.ONE_TO_ONE, targets, path, pytest.fail)
    assert sorted(t.name for t, _ in one) == ["x", "y"]
    warnings = []
    many = mapping.assign(functions * 2, MapMode.ONE_TO_ONE, targets, path, warnings.append)
    assert [t.name for t, _ in many] == ["x"] * 4
    assert warnings == [("--map one-to-one: 4 functions but 3 profiled actions: falling back to nearest (actions are "
                        "shared)")]


def test_profile_annotation_and_named_errors(tmp_path):
    with pytest.raises(WorkloadError, match=r"manifest.yml: packages:default:actions:x:annotations:profile:memory_mb: "
                                            r"expected a number > 0, got 'big'"):
        mapping.read_targets(manifest(tmp_path, {"x": {"duration_ms": 10, "memory_mb": "big"}}))
    with pytest.raises(WorkloadError, match=r"profile:duraton_ms: unknown key"):
        mapping.read_targets(manifest(tmp_path, {"x": {"duraton_ms": 10, "memory_mb": 1}}))
    path = manifest(tmp_path, {"x": None})
    targets = mapping.read_targets(path)
    with pytest.raises(WorkloadError, match="no action has a `profile: {duration_ms, memory_mb}` annotation"):
        mapping.assign([function("a", 1, 1)], MapMode.NEAREST, targets, path, pytest.fail)
    with pytest.raises(WorkloadError, match=r"trace:a: action 'nope' is not in .*manifest.yml"):
        mapping.assign([function("a", 1, 1, action="nope")], MapMode.NAMED, targets, path, pytest.fail)
    with pytest.raises(WorkloadError, match=r"trace:a: --map nearest needs the function's duration"):
        mapping.assign([function("a", None, 1)], MapMode.NEAREST, targets, path, pytest.fail)


def test_calibrated_limits_clamp_and_say_why():
    platform = PlatformLimits()
    fits = limits.calibrated_limits(Percentiles((0, 100), (50.0, 100.0)), Percentiles((0, 100), (10.0, 2000.0)),
                                    platform)
    assert (fits.memory_limit_mb, fits.timeout_ms, fits.memory_cap_mb, fits.duration_cap_ms, fits.clamps) == (
        132, 60_000, 100.0, 2000.0, ())
    huge = limits.calibrated_limits(Percentiles.constant(900.0), Percentiles.constant(600_000.0), platform)
    assert (huge.memory_limit_mb, huge.timeout_ms, huge.memory_cap_mb, huge.duration_cap_ms) == (512, 300_000, 480.0,
                                                                                                 239_200.0)
    assert huge.clamps == ("memory up to 900.0 MB above the platform's 512 MB limit: capped at 480 MB",
                           "duration up to 600000 ms beyond the platform's 300000 ms limit: capped at 239200 ms")
    tiny = limits.calibrated_limits(Percentiles.constant(3.0), Percentiles.constant(1.0), platform)
    assert tiny.memory_limit_mb == 128 and tiny.timeout_ms == 60_000
    assert tiny.clamps == ("median memory 3.0 MB below the runtime's own ~16 MB: the action cannot use less",)
    assert limits.clamp_manifest_limits(2048, 50, platform) == (512, 100, (
        "memorySize 2048 MB outside the platform's 128-512 MB: 512", ("timeout 50 ms outside the platform's "
                                                                     "100-300000 ms: 100")))


def test_user_load_peaks():
    load = UserLoad().add_all([(0, 5_000_000), (1_000_000, 2_000_000), (1_500_000, 3_000_000),
                               (2_000_000, 2_500_000), (61_000_000, None)])
    assert (load.invocations, load.peak_per_minute, load.peak_window_start_us) == (5, 4, 0)
    assert load.peak_concurrency is None  # one invocation of unknown duration
    load = UserLoad().add_all([(0, 5_000_000), (1_000_000, 2_000_000), (1_500_000, 3_000_000), (2_000_000, 2_500_000)])
    assert load.peak_concurrency == 3  # the second ended when the fourth started
    concurrency = PeakConcurrency()
    for start, end in [(0, 10), (5, 15), (10, 20), (10, 12), (30, None)]:
        concurrency.add(start, end)
        if end is not None:
            peak = concurrency.peak
    assert peak == 3 and concurrency.peak is None   # an end at a start frees the container; unknown: None


def test_the_pool_that_holds_every_container():
    containers = {("alice", "resize"): 3, ("bob", "resize"): 1, ("alice", "echo"): 2}
    assert conversion.pool_memory_mb(containers, {"resize": 512, "echo": None}) == 4 * 512 + 2 * 256
    assert conversion.pool_memory_mb({("alice", "resize"): None}, {"resize": 512}) is None


def test_calibrated_output_caps_parameters_and_writes_limits(capsys, tmp_path):
    out = tmp_path / "out"
    code, _, stderr = convert(capsys, "azure2019", "--trace", AZURE2019, "--out", out, "--map", "calibrated",
                              "--max-duration-ms", 2000, "--max-memory-mb", 256, "--cpu-share", 0.25,
                              "--minutes", "540:542")
    assert code == 0
    document = yaml.safe_load((out / "manifest.yml").read_text())["packages"]["default"]["actions"]
    for row in read_mapping(out):
        entry = document[row["action"]]
        assert entry["function"].endswith("actions/calibrated/replay.py")
        assert (entry["limits"]["memorySize"], entry["limits"]["timeout"]) == (int(row["memory_limit_mb"]),
                                                                               int(row["timeout_ms"]))
        assert entry["inputs"] == {"timeout_ms": 2000}  # no end_early_ms unless asked
        assert 128 <= int(row["memory_limit_mb"]) <= 256 and int(row["timeout_ms"]) == 2000
        for _, _, parameters in read_trace(out / "traces" / row["trace_file"]):
            assert float(parameters["duration_ms"]) <= 800 and float(parameters["memory_mb"]) <= 224
            assert parameters["cpu_share"] == "0.25"
        if row["clamps"]:
            assert f"{row['trace_file']}: {row['clamps'].split('; ')[0]}" in stderr
    assert "beyond the platform's 2000 ms limit: capped at 800 ms" in stderr
    early = tmp_path / "early"
    assert convert(capsys, "azure2019", "--trace", AZURE2019, "--out", early, "--map", "calibrated",
                   "--minutes", "540:542", "--end-early-ms", 1.5)[0] == 0
    actions = yaml.safe_load((early / "manifest.yml").read_text())["packages"]["default"]["actions"]
    assert {entry["inputs"]["end_early_ms"] for entry in actions.values()} == {1.5}
    assert json.loads((early / "workload.json").read_text())["options"]["end_early_ms"] == 1.5


def test_names_are_stable_and_valid():
    hashes = ["abcdef012345" + "0" * 52, "abcdef012345" + "1" * 52, "123456789abc" + "f" * 52]
    names = naming.short_hashes(hashes, "f")
    assert names[hashes[2]] == "f123456789abc"
    assert names[hashes[0]] == "fabcdef0123450000" and names[hashes[1]] == "fabcdef0123451111"
    assert naming.short_hashes(hashes[2:], "f") == {hashes[2]: "f123456789abc"}
    with pytest.raises(WorkloadError, match=r"where: name 'a-b' may only hold letters, digits and '_'"):
        naming.check_name("a-b", "where")


def test_sample_takes_one_per_stratum():
    functions = [function(f"f{i:03d}", 10, 10, invocations=i + 1) for i in range(100)]
    chosen = sampling.sample(functions, 10, seed=4)
    assert len(chosen) == 10
    ranked = sorted(f.invocations for f in chosen)
    assert all(10 * i < count <= 10 * (i + 1) for i, count in enumerate(ranked))  # one in each tenth
    assert sampling.sample(functions, 10, seed=4) == chosen and sampling.sample(functions, 500, seed=4) == functions
    report = sampling.report(functions, chosen, span_minutes=10.0)
    assert report["invocations_per_minute"]["wasserstein"] < 1.0


def test_peak_per_minute_is_over_any_60_seconds():
    """Two bursts astride a minute boundary: 3 in each calendar minute, 6 within 60 s."""
    starts = [50_000_000, 55_000_000, 59_000_000, 61_000_000, 65_000_000, 70_000_000, 200_000_000]
    load = UserLoad().add_all((s, s + 1000) for s in starts)
    assert (load.peak_per_minute, load.peak_window_start_us) == (6, 50_000_000)


def test_calibrated_memory_is_the_median_or_a_draw_per_invocation(capsys, tmp_path):
    memory = {}
    for pick in ("median", "draw"):
        out = tmp_path / pick
        assert convert(capsys, "azure2019", "--trace", AZURE2019, "--out", out, "--map", "calibrated", "--memory", pick,
                       "--minutes", "540:545")[0] == 0
        memory[pick] = {row["trace_file"]: (row, {p["memory_mb"] for _, _, p in read_trace(out / "traces" /
                                                                                              row["trace_file"])})
                        for row in read_mapping(out)}
    for trace, (row, values) in memory["median"].items():
        assert values == {row["memory_mb_p50"]} or row["clamps"], (trace, values)
    assert sum(len(values) > 1 for _, values in memory["draw"].values()) > 50
