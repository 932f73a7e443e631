"""``python -m loader.workloads`` azure2021, faasprofiler and synthetic: what each source becomes, and bad input."""

from __future__ import annotations

import csv
import itertools
import json
from decimal import Decimal

import pytest
import yaml
from scipy import stats

from tests.workloads_support import AZURE2021, FAASPROFILER, convert, mapping, read_trace, workload

ECHO = "def main(args):\n    return {'outputsize': 0, 'params': args}\n"


def manifest(tmp_path, *names: str, profiles: dict | None = None):
    """A wskdeploy manifest of echo actions called ``names``."""
    (tmp_path / "echo.py").write_text(ECHO)
    actions = {}
    for name in names:
        actions[name] = {"function": "echo.py", "runtime": "python:3.11", "limits": {"memorySize": 128}}
        if profiles and name in profiles:
            actions[name]["annotations"] = {"profile": profiles[name]}
    path = tmp_path / "manifest.yml"
    path.write_text(yaml.safe_dump({"packages": {"default": {"actions": actions}}}))
    return path


# --------------------------------------------------------------------------- Azure 2021


def test_azure2021_start_times_are_exact_to_the_microsecond(capsys, tmp_path):
    out = tmp_path / "out"
    code, _, stderr = convert(capsys, "azure2021", "--trace", AZURE2021, "--out", out, "--map", "calibrated",
                              "--default-memory-mb", 96, "--max-duration-ms", 600_000)
    assert code == 0, stderr
    expected: dict[str, list[tuple[Decimal, Decimal]]] = {}
    with open(AZURE2021, newline="") as stream:
        for row in csv.DictReader(stream):
            end, duration = Decimal(row["end_timestamp"]), Decimal(row["duration"])
            expected.setdefault(row["func"], []).append((end - duration, duration))
    origin = min(min(s for s, _ in rows) for rows in expected.values())
    shift = -min(origin, Decimal(0))
    assert Decimal(workload(out)["source_report"]["notes"]["origin_shift_us"]) == (shift * 1_000_000).quantize(1)
    rows = mapping(out)
    assert len(rows) == 31 and {r["source_function"] for r in rows} == set(expected)
    lines = 0
    for row in rows:
        written = read_trace(out / "traces" / row["trace_file"])
        wanted = sorted(expected[row["source_function"]])
        assert len(written) == len(wanted)
        for (offset_us, _, parameters), (start_s, duration_s) in zip(written, wanted):
            assert abs(Decimal(offset_us) - (start_s + shift) * 1_000_000) <= 1
            assert Decimal(parameters["duration_ms"]) == duration_s * 1000  # each invocation's own duration
            assert parameters["memory_mb"] == "96"
        lines += len(written)
    assert lines == 199 and workload(out)["counts"]["invocations"] == 199
    # the pool that holds every container: per function (its own action), its peak in flight x 128 MB
    def peak(intervals):
        return max(sum(1 for s, d in intervals if s <= start < s + d) for start, _ in intervals)
    limits_mb = {r["source_function"]: int(r["memory_limit_mb"]) for r in rows}
    assert set(limits_mb.values()) == {128}
    assert workload(out)["limits"]["pool_memory_mb"] == sum(peak(v) * limits_mb[f] for f, v in expected.items())


def test_azure2021_bad_rows(capsys, tmp_path):
    text = AZURE2021.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(text[:5] + [text[5].rsplit(",", 1)[0] + ",-0.5"] + text[6:]) + "\n")
    code, _, stderr = convert(capsys, "azure2021", "--trace", bad, "--out", tmp_path / "o")
    assert code == 2 and stderr.strip() == f"loader.workloads: {bad}:6: column duration: negative duration -0.5"
    fields = text[3].split(",")
    bad.write_text("\n".join(text[:3] + [",".join(fields[:2] + ["soon"] + fields[3:])] + text[4:]) + "\n")
    assert f"{bad}:4: column end_timestamp: " in convert(capsys, "azure2021", "--trace", bad, "--out", tmp_path / "o")[2]
    bad.write_text("app,function,end_timestamp,duration\n1,2,3,4\n")
    assert convert(capsys, "azure2021", "--trace", bad, "--out", tmp_path / "o")[2].strip() == (
        f"loader.workloads: {bad}:1: missing column func (an Azure Functions 2021 invocations file; the header is "
        "'app,function,end_timestamp,duration')")


# --------------------------------------------------------------------------- FaaSProfiler


def test_faasprofiler_config_becomes_one_trace_per_instance(capsys, tmp_path):
    actions = manifest(tmp_path, "example_app1", "example_app2", "example_app3")
    out = tmp_path / "out"
    code, _, stderr = convert(capsys, "faasprofiler", "--config", FAASPROFILER, "--out", out, "--manifest", actions)
    assert code == 0, stderr
    rows = {r["source_function"]: r for r in mapping(out)}
    assert {r["trace_file"] for r in rows.values()} == {
        "example_test-example_app1-instance1", "example_test-example_app1-instance2",
        "example_test-example_app2-instance3", "example_test-example_app3-instance4"}
    poisson = [o for o, _, _ in read_trace(out / "traces" / rows["instance1"]["trace_file"])]
    assert all(5e6 <= o < 10e6 for o in poisson) and abs(len(poisson) - 125) < 5 * 125 ** 0.5
    uniform = [o for o, _, _ in read_trace(out / "traces" / rows["instance2"]["trace_file"])]
    assert len(uniform) == 50 and {b - a for a, b in itertools.pairwise(uniform)} <= {99_999, 100_000, 100_001}
    explicit = [o for o, _, _ in read_trace(out / "traces" / rows["instance3"]["trace_file"])]
    assert explicit == [5_000_000, 5_130_000, 5_280_000, 6_080_000, 6_180_000, 6_310_000, 6_440_000, 6_540_000,
                        6_940_000]
    with_params = read_trace(out / "traces" / rows["instance4"]["trace_file"])
    assert with_params and all(p == {"width": "64", "mode": "nearest", "options": '{"keep":true}'}
                               for _, _, p in with_params)
    document = workload(out)
    assert document["seed"] == 100 and document["source_report"]["notes"]["ignored_keys"] == ["blocking_cli",
                                                                                              "perf_monitoring"]
    assert [f["path"] for f in document["files"]] == [str(FAASPROFILER), str(FAASPROFILER.parent / "param_file.json")]


def test_faasprofiler_bad_configs(capsys, tmp_path):
    config = json.loads(FAASPROFILER.read_text())
    path = tmp_path / "config.json"
    (tmp_path / "param_file.json").write_text((FAASPROFILER.parent / "param_file.json").read_text())

    def error(document) -> str:
        path.write_text(document if isinstance(document, str) else json.dumps(document, indent=1))
        code, _, stderr = convert(capsys, "faasprofiler", "--config", path, "--out", tmp_path / "o",
                                  "--manifest", manifest(tmp_path, "example_app1"))
        assert code == 2, stderr
        return stderr.strip().removeprefix("loader.workloads: ")
    assert error({**config, "test_duraton_in_seconds": 5}).startswith(f"{path}: test_duraton_in_seconds: unknown key")
    broken = json.loads(json.dumps(config))
    broken["instances"]["instance1"]["distribuion"] = "Poisson"
    assert error(broken).startswith(f"{path}: instances:instance1:distribuion: unknown key")
    broken["instances"]["instance1"].pop("distribuion")
    broken["instances"]["instance2"]["distribution"] = "Zipf"
    assert error(broken) == (f"{path}: instances:instance2:distribution: expected Poisson or Uniform (or an "
                             "interarrivals_list), got 'Zipf'")
    assert error('{"test_name": "x",\n "instances": {,}}').startswith(f"{path}:2: not valid JSON")
    assert "action 'example_app2' is not in" in error(config)


# --------------------------------------------------------------------------- synthetic


SPEC = {
    "seed": 11,
    "duration_s": 600,
    "functions": {
        "steady": {"user": "alice1", "action": "echo", "arrivals": {"process": "poisson", "rate_per_s": 20},
                   "parameters": [{"name": "width", "range_int": [8, 16]}, {"name": "mode", "fixed": "nearest"}],
                   "inputs": ["a.jpg", "b.jpg"], "duration_ms": {"50": 100, "99": 300}, "memory_mb": 64},
        "ticks": {"user": "alice1", "action": "echo", "arrivals": {"process": "equidistant", "rate_per_s": 0.5},
                  "window_s": [100, 200], "input": "t.dat", "duration_ms": 20, "memory_mb": 32},
        "waves": {"user": "bobby", "app": "waves_app", "action": "echo",
                  "arrivals": {"process": "piecewise", "rates": [[0, 1], [300, 4]]}},
        "listed": {"user": "bobby", "action": "echo", "arrivals": {"process": "explicit", "interarrivals_s": [1, 0.5, 2]}},
        "jitter": {"user": "bobby", "action": "echo", "arrivals": {"process": "uniform", "rate_per_s": 2}},
    },
}


def test_synthetic_spec_processes_windows_parameters_and_reproducibility(capsys, tmp_path):
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump(SPEC))
    actions = manifest(tmp_path, "echo")
    out = tmp_path / "out"
    code, _, stderr = convert(capsys, "synthetic", "--spec", spec, "--out", out, "--manifest", actions)
    assert code == 0, stderr
    traces = {r["source_function"]: read_trace(out / "traces" / r["trace_file"]) for r in mapping(out)}
    steady = traces["steady"]
    gaps = [(b[0] - a[0]) / 1e6 for a, b in itertools.pairwise(steady)]
    assert abs(len(steady) - 12_000) < 5 * 12_000 ** 0.5
    assert stats.kstest(gaps, "expon", args=(0, 0.05)).pvalue > 0.01
    assert {i for _, i, _ in steady} == {"a.jpg", "b.jpg"}
    assert {p["mode"] for _, _, p in steady} == {"nearest"} and {p["width"] for _, _, p in steady} == {
        str(w) for w in range(8, 17)}
    ticks = traces["ticks"]
    assert len(ticks) == 50 and all(100e6 <= o < 200e6 for o, _, _ in ticks) and {i for _, i, _ in ticks} == {"t.dat"}
    assert [o for o, _, _ in traces["listed"]] == [1_000_000, 1_500_000, 3_500_000]
    waves = [o for o, _, _ in traces["waves"]]
    assert sum(1 for o in waves if o < 300e6) < sum(1 for o in waves if o >= 300e6) / 2
    assert abs(len(traces["jitter"]) - 1200) < 5 * 1200 ** 0.5
    users = {r["user"] for r in mapping(out)}
    assert users == {"alice1", "bobby"}
    assert workload(out)["seed"] == 11
    again = tmp_path / "again"
    assert convert(capsys, "synthetic", "--spec", spec, "--out", again, "--manifest", actions)[0] == 0
    assert (again / "traces").iterdir and all((again / "traces" / p.name).read_bytes() == p.read_bytes()
                                              for p in (out / "traces").iterdir())
    calibrated = tmp_path / "calibrated"
    code, _, stderr = convert(capsys, "synthetic", "--spec", spec, "--out", calibrated, "--map", "calibrated")
    assert code == 2 and "functions:jitter: --map calibrated needs the function's duration" in stderr


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(functons=s.pop("functions")), ("{path}: functons: unknown key (expected one of seed, "
                                                       "duration_s, functions)")),
    (lambda s: s["functions"]["steady"]["arrivals"].update(rate_per_sec=1),
     "{path}: functions:steady:arrivals:rate_per_sec: unknown key (expected one of process, rate_per_s)"),
    (lambda s: s["functions"]["ticks"].update(windows_s=[0, 1]), "{path}: functions:ticks:windows_s: unknown key"),
    (lambda s: s["functions"]["waves"]["arrivals"].update(process="bursty"),
     "{path}: functions:waves:arrivals:process: unknown process 'bursty'"),
    (lambda s: s["functions"]["steady"]["parameters"].append({"name": "object", "fixed": "x"}),
     "{path}: functions:steady:parameters[2]:name: parameter 'object' is set by the loader"),
    (lambda s: s["functions"]["steady"]["parameters"].append({"name": "n", "range_int": [5, 1]}),
     "functions:steady:parameters[2]:range_int: expected [min, max] with min <= max"),
    (lambda s: s["functions"]["ticks"].update(window_s=[300, 200]), "{path}: functions:ticks:window_s: empty window"),
    (lambda s: s.update(duration_s=-5), "{path}: duration_s: expected a number of seconds >= 0, got -5"),
    (lambda s: s["functions"]["ticks"].update(input="a\tb"), "{path}: functions:ticks:input: 'a\\tb' holds a tab"),
])
def test_synthetic_spec_errors_name_the_key(capsys, tmp_path, edit, message):
    spec = json.loads(json.dumps(SPEC))
    edit(spec)
    path = tmp_path / "spec.yml"
    path.write_text(yaml.safe_dump(spec))
    code, _, stderr = convert(capsys, "synthetic", "--spec", path, "--out", tmp_path / "o",
                              "--manifest", manifest(tmp_path, "echo"))
    assert code == 2
    assert message.format(path=path) in stderr, stderr


def test_synthetic_yaml_syntax_and_user_name_errors(capsys, tmp_path):
    path = tmp_path / "spec.yml"
    path.write_text("duration_s: 10\nfunctions:\n  f: {arrivals: [\n")
    code, _, stderr = convert(capsys, "synthetic", "--spec", path, "--out", tmp_path / "o")
    assert code == 2 and stderr.startswith(f"loader.workloads: {path}:4: not valid YAML")
    path.write_text(yaml.safe_dump({"duration_s": 10, "functions": {"f": {
        "user": "bob", "action": "echo", "arrivals": {"process": "poisson", "rate_per_s": 1}}}}))
    code, _, stderr = convert(capsys, "synthetic", "--spec", path, "--out", tmp_path / "o",
                              "--manifest", manifest(tmp_path, "echo"))
    assert code == 2 and stderr.strip() == (f"loader.workloads: {path}: functions:f (owner as user): name 'bob' is "
                                            "shorter than 5 characters (OpenWhisk's minimum for a user)")


def test_the_keepalive_decides_which_sparse_invocations_are_predicted_cold(capsys, tmp_path):
    """An invocation every 20 minutes: each starts cold on a platform that keeps idle containers 10
    minutes (OpenWhisk's), so each gets the function's median (outside the strata); kept an hour,
    only the first does, and the others get the strata's quantiles (1/6, 1/2, 5/6: the profile gives
    100 ms below its median)."""
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump({"seed": 5, "duration_s": 4000, "functions": {"hourly": {
        "user": "carol1", "action": "echo", "arrivals": {"process": "explicit", "interarrivals_s": [1, 1200, 1200, 1200]},
        "duration_ms": {"50": 100, "99": 300}, "memory_mb": 64}}}))
    durations = {}
    for keepalive_s in (600, 3600):
        out = tmp_path / f"keepalive-{keepalive_s}"
        code, _, stderr = convert(capsys, "synthetic", "--spec", spec, "--out", out, "--map", "calibrated",
                                  "--draws", "quantiles", "--keepalive-s", keepalive_s)
        assert code == 0, stderr
        assert workload(out)["limits"]["platform"]["keepalive_s"] == keepalive_s
        (row,) = mapping(out)
        durations[keepalive_s] = [float(p["duration_ms"]) for _, _, p in read_trace(out / "traces" / row["trace_file"])]
    assert durations[600] == [100.0] * 4
    assert durations[3600][0] == 100.0 and max(durations[3600][1:]) > 100.0   # the 5/6 quantile among them
