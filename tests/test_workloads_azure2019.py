"""``python -m loader.workloads azure2019``: exact counts, reproducibility, layouts, options and bad input."""

from __future__ import annotations

import csv
import shutil

import pytest

from tests.workloads_support import (
    AZURE2019,
    convert,
    mapping,
    per_column,
    published_day,
    read_trace,
    source_counts,
    tree_bytes,
    workload,
)


@pytest.mark.parametrize("iat", ["exponential", "uniform", "equidistant"])
def test_every_function_every_minute_has_the_sources_count(capsys, tmp_path, iat):
    out = tmp_path / "out"
    code, stdout, stderr = convert(capsys, "azure2019", "--trace", AZURE2019, "--out", out, "--seed", 1,
                                   "--iat", iat, "--map", "calibrated")
    assert code == 0, stderr
    source = source_counts()
    rows = mapping(out)
    assert len(rows) == 250 == len(source) and len(list((out / "traces").iterdir())) == 250
    for row in rows:
        lines = read_trace(out / "traces" / row["trace_file"])
        offsets = [offset for offset, _, _ in lines]
        assert offsets == sorted(offsets)
        assert per_column(offsets, 150) == source[row["source_function"]], row["trace_file"]
        assert int(row["invocations"]) == sum(source[row["source_function"]])
    document = workload(out)
    assert document["counts"]["invocations"] == 324_209 and document["duration_s"] == 9000.0
    assert "324209 invocations over 9000.000 s" in stdout


def test_same_inputs_and_seed_give_byte_identical_output(capsys, tmp_path):
    args = ("azure2019", "--trace", AZURE2019, "--seed", 7, "--sample", 40, "--minutes", "560:600", "--iat", "uniform",
            "--out", tmp_path / "out")
    assert convert(capsys, *args)[0] == 0
    (tmp_path / "out").rename(tmp_path / "first")
    assert convert(capsys, *args)[0] == 0
    first, second = tree_bytes(tmp_path / "first"), tree_bytes(tmp_path / "out")
    assert len(first) == 40 + 4 and first == second  # 40 traces, manifest, mapping, dropped, workload.json
    assert convert(capsys, *args[:4], 8, *args[5:-1], tmp_path / "other")[0] == 0
    assert tree_bytes(tmp_path / "other")["mapping.csv"] != first["mapping.csv"]  # another seed, another sample


def test_workload_json_records_sources_options_and_counts(capsys, tmp_path):
    out = tmp_path / "out"
    assert convert(capsys, "azure2019", "--trace", AZURE2019, "--out", out, "--seed", 3, "--sample", 25)[0] == 0
    document = workload(out)
    import hashlib
    assert [(f["path"], f["sha256"]) for f in document["files"]] == [
        (str(AZURE2019 / n), hashlib.sha256((AZURE2019 / n).read_bytes()).hexdigest())
        for n in ("invocations.csv", "durations.csv", "memory.csv")]
    assert document["options"]["sample"] == 25 and document["options"]["map_mode"] == "nearest"
    assert document["seed"] == 3 and document["counts"]["traces"] == 25
    sample = document["sample"]
    assert sample["population"] == 250 and sample["sample"] == 25
    for metric in ("invocations_per_minute", "duration_ms_p50", "memory_mb_p50"):
        assert sample[metric]["wasserstein"] >= 0 and sample[metric]["wasserstein_log10"] >= 0
    assert document["limits"]["users"] and all(u["peak_per_minute"] >= 1 for u in document["limits"]["users"].values())
    assert document["limits"]["mean_in_flight"] > 0


def test_sampling_keeps_the_rate_distribution(capsys, tmp_path):
    """One function per rate quantile: the sample's log-rate distribution stays near the population's."""
    assert convert(capsys, "azure2019", "--trace", AZURE2019, "--out", tmp_path / "s", "--seed", 5,
                   "--sample", 50)[0] == 0
    sample = workload(tmp_path / "s")["sample"]
    assert sample["invocations_per_minute"]["wasserstein_log10"] < 0.15
    counts = sorted(sum(c) for c in source_counts().values())
    chosen = sorted(int(r["invocations"]) for r in mapping(tmp_path / "s"))
    for stratum, value in enumerate(chosen):  # one function in each 1/50 quantile of the counts
        assert counts[stratum * 5] <= value <= counts[stratum * 5 + 4]


def test_minutes_time_scale_rate_scale_and_second_granularity(capsys, tmp_path):
    source = source_counts()
    out = tmp_path / "scaled"
    assert convert(capsys, "azure2019", "--trace", AZURE2019, "--out", out, "--minutes", "600:610",
                   "--time-scale", "0.1", "--map", "calibrated")[0] == 0
    for row in mapping(out):
        offsets = [o for o, _, _ in read_trace(out / "traces" / row["trace_file"])]
        assert per_column(offsets, 10, 6_000_000) == source[row["source_function"]][60:70]
    assert workload(out)["duration_s"] == 60.0
    seconds = tmp_path / "seconds"
    assert convert(capsys, "azure2019", "--trace", AZURE2019, "--out", seconds, "--granularity", "second",
                   "--minutes", "540:560", "--map", "calibrated")[0] == 0
    for row in mapping(seconds):
        offsets = [o for o, _, _ in read_trace(seconds / "traces" / row["trace_file"])]
        assert per_column(offsets, 20, 1_000_000) == source[row["source_function"]][:20]
    doubled = tmp_path / "doubled"
    assert convert(capsys, "azure2019", "--trace", AZURE2019, "--out", doubled, "--rate-scale", "2",
                   "--map", "calibrated", "--minutes", "540:545")[0] == 0
    for row in mapping(doubled):
        offsets = [o for o, _, _ in read_trace(doubled / "traces" / row["trace_file"])]
        assert per_column(offsets, 5) == [2 * c for c in source[row["source_function"]][:5]]
    thinned = tmp_path / "thinned"
    assert convert(capsys, "azure2019", "--trace", AZURE2019, "--out", thinned, "--rate-scale", "0.5",
                   "--map", "calibrated", "--seed", 2)[0] == 0
    total = workload(thinned)["counts"]["invocations"]
    assert abs(total - 324_209 / 2) < 4 * (324_209 * 0.25) ** 0.5  # binomial thinning, 4 sigma


def test_equidistant_phase_shift_avoids_minute_start_bursts(capsys, tmp_path):
    for flag, name in (([], "shifted"), (["--no-phase-shift"], "aligned")):
        assert convert(capsys, "azure2019", "--trace", AZURE2019, "--out", tmp_path / name, "--iat", "equidistant",
                       "--map", "calibrated", "--minutes", "540:550", *flag)[0] == 0
    at_minute_start = {}
    for name in ("shifted", "aligned"):
        offsets = [o for path in (tmp_path / name / "traces").iterdir() for o, _, _ in read_trace(path)]
        at_minute_start[name] = sum(1 for o in offsets if o % 60_000_000 < 10_000)
    assert at_minute_start["aligned"] > 10 * max(1, at_minute_start["shifted"])


def test_published_layout_splits_app_memory(capsys, tmp_path):
    day = published_day(AZURE2019, tmp_path / "published")
    out = {}
    for mode in ("equal", "copy", "busy"):
        out[mode] = tmp_path / mode
        code, _, stderr = convert(capsys, "azure2019", "--trace", day, "--out", out[mode], "--app-memory", mode,
                                  "--map", "calibrated", "--minutes", "2:6")  # the same columns as 541:545
        assert code == 0, stderr
    triple = tmp_path / "triple"
    assert convert(capsys, "azure2019", "--trace", AZURE2019, "--out", triple, "--map", "calibrated",
                   "--minutes", "541:545")[0] == 0
    rows = {m: {r["source_function"]: r for r in mapping(out[m])} for m in out}
    given = {r["source_function"]: r for r in mapping(triple)}
    assert rows["copy"].keys() == given.keys()
    apps: dict[str, list[str]] = {}
    for function, row in given.items():
        apps.setdefault(row["source_app"], []).append(function)
    shared = [fs for fs in apps.values() if len(fs) > 1]
    for function, row in given.items():
        assert rows["copy"][function]["memory_mb_p50"] == row["memory_mb_p50"]  # vSwarm's form copies
    with open(AZURE2019 / "invocations.csv", newline="") as stream:
        app_size = {}
        for r in list(csv.reader(stream))[1:]:
            app_size[r[1]] = app_size.get(r[1], 0) + 1
    for function, row in rows["equal"].items():
        n = app_size[row["source_app"]]
        assert float(row["memory_mb_p50"]) == pytest.approx(float(given[function]["memory_mb_p50"]) / n, abs=1e-3)
        assert f"over {n} functions" in row["memory_origin"]
    for functions in shared:  # busy shares add up to the app's memory
        kept = [f for f in functions if f in rows["busy"]]
        if len(kept) == len(functions):
            total = sum(float(rows["busy"][f]["memory_mb_p50"]) for f in functions)
            assert total == pytest.approx(float(given[functions[0]]["memory_mb_p50"]), rel=1e-3)
    assert workload(out["equal"])["source_report"]["notes"]["layout"] == "published"


def test_function_selection_and_users_by_function(capsys, tmp_path):
    source = source_counts()
    hashes = sorted(source)[:2]
    out = tmp_path / "two"
    assert convert(capsys, "azure2019", "--trace", AZURE2019, "--out", out, "--function", hashes[0][:10],
                   "--function", hashes[1], "--users", "function", "--map", "calibrated")[0] == 0
    rows = mapping(out)
    assert sorted(r["source_function"] for r in rows) == hashes
    assert all(r["user"] == "f" + r["source_function"][:12] for r in rows)
    assert all(r["action"] == "cal_f" + r["source_function"][:12] for r in rows)


# --------------------------------------------------------------------------- bad input


def _broken(tmp_path, name: str, edit) -> object:
    trace = tmp_path / "broken"
    shutil.copytree(AZURE2019, trace)
    path = trace / name
    path.chmod(0o644)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")
    return trace


def _error(capsys, tmp_path, *args) -> str:
    code, _, stderr = convert(capsys, "azure2019", *args, "--out", tmp_path / "never")
    assert code == 2, stderr
    assert not (tmp_path / "never").exists() and not list(tmp_path.glob(".never.partial-*"))
    return stderr.strip()


def test_missing_column_is_named(capsys, tmp_path):
    trace = _broken(tmp_path, "durations.csv", lambda ls: [ls[0].replace("percentile_Average_75,", "")] +
                    [",".join(line.split(",")[:11] + line.split(",")[12:]) for line in ls[1:]])
    assert _error(capsys, tmp_path, "--trace", trace) == (
        f"loader.workloads: {trace}/durations.csv:1: missing column percentile_Average_75 (an Azure Functions 2019 "
        f"durations file; the header is 'HashOwner,HashApp,HashFunction,Average,Count,Minimum,...')")
    trace2 = _broken(tmp_path / "2", "invocations.csv", lambda ls: [ls[0].replace("HashFunction", "HashFn")] + ls[1:])
    assert _error(capsys, tmp_path, "--trace", trace2).endswith(
        f"{trace2}/invocations.csv:1: missing column HashFunction (an Azure Functions 2019 invocations file; "
        "the header is 'HashOwner,HashApp,HashFn,Trigger,540,541,...')")


def test_negative_count_and_non_integer_name_line_and_minute(capsys, tmp_path):
    trace = _broken(tmp_path, "invocations.csv", lambda ls: ls[:7] + [ls[7].rsplit(",", 2)[0] + ",-3,0"] + ls[8:])
    assert _error(capsys, tmp_path, "--trace", trace) == (
        f"loader.workloads: {trace}/invocations.csv:8: column 688: negative count -3")
    trace2 = _broken(tmp_path / "2", "invocations.csv", lambda ls: ls[:3] + [ls[3].replace(",0,", ",x,", 1)] + ls[4:])
    assert "invocations.csv:4: column " in _error(capsys, tmp_path, "--trace", trace2)
    assert "'x' is not an integer count" in _error(capsys, tmp_path, "--trace", trace2)
    trace3 = _broken(tmp_path / "3", "invocations.csv", lambda ls: ls[:5] + [ls[5].rsplit(",", 3)[0]] + ls[6:])
    assert _error(capsys, tmp_path, "--trace", trace3).endswith("invocations.csv:6: 151 fields, the header has 154")


def test_not_a_csv_file(capsys, tmp_path):
    trace = tmp_path / "notcsv"
    shutil.copytree(AZURE2019, trace)
    (trace / "invocations.csv").chmod(0o644)
    (trace / "invocations.csv").write_text('{"this": "is JSON"}\n')
    assert _error(capsys, tmp_path, "--trace", trace) == (
        f"loader.workloads: {trace}/invocations.csv:1: not an Azure Functions 2019 invocations file: none of the "
        "columns HashOwner, HashApp, HashFunction, Trigger in the first line ('{\"this\": \"is JSON\"}')")
    (trace / "invocations.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    assert _error(capsys, tmp_path, "--trace", trace).endswith("invocations.csv:1: not UTF-8 text (is it a CSV file?)")
    (trace / "invocations.csv").write_bytes((AZURE2019 / "invocations.csv").read_bytes())
    (trace / "memory.csv").chmod(0o644)
    (trace / "memory.csv").write_bytes(b"\xff\xfe\x00garbage")
    assert _error(capsys, tmp_path, "--trace", trace).endswith("memory.csv:1: not UTF-8 text (is it a CSV file?)")


def test_unknown_hash_and_other_option_errors(capsys, tmp_path):
    assert _error(capsys, tmp_path, "--trace", AZURE2019, "--function", "0123456789abcdef") == (
        f"loader.workloads: --function 0123456789abcdef: unknown hash: no HashFunction of {AZURE2019}/invocations.csv "
        "starts with it")
    assert _error(capsys, tmp_path, "--trace", AZURE2019, "--minutes", "100:200").startswith(
        "loader.workloads: --minutes: 100:200 is not within the file's minutes 540:690")
    assert _error(capsys, tmp_path, "--trace", AZURE2019, "--day", "3").startswith("loader.workloads: --day: ")
    assert _error(capsys, tmp_path, "--trace", tmp_path / "nothing").endswith("not a directory (expected the Azure "
                                                                              "2019 CSV files)")
    with pytest.raises(SystemExit) as stop:
        convert(capsys, "azure2019", "--trace", AZURE2019, "--out", tmp_path / "x", "--time-scale", "-1")
    assert stop.value.code == 2 and "--time-scale: '-1' must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert(capsys, "azure2019", "--trace", AZURE2019, "--out", tmp_path / "x", "--minutes", "5-9")
    assert "argument --minutes: '5-9' is not A:B" in capsys.readouterr().err


def test_decreasing_percentiles_and_duplicate_rows(capsys, tmp_path):
    def swap(lines):
        fields = lines[4].split(",")
        fields[9], fields[10] = fields[10], fields[9]
        return lines[:4] + [",".join(fields)] + lines[5:]
    trace = _broken(tmp_path, "durations.csv", swap)
    assert "durations.csv:5: values must not decrease with the percent" in _error(capsys, tmp_path, "--trace", trace)
    trace2 = _broken(tmp_path / "2", "invocations.csv", lambda ls: ls + [ls[3]])
    assert _error(capsys, tmp_path, "--trace", trace2).endswith("already on line 4")


def test_existing_output_is_not_overwritten(capsys, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("mine")
    code, _, stderr = convert(capsys, "azure2019", "--trace", AZURE2019, "--out", tmp_path / "full")
    assert code == 2 and "exists and is not an empty directory" in stderr
    assert (tmp_path / "full" / "keep").read_text() == "mine"


@pytest.mark.parametrize("option, value, message", [
    ("--sample", "0", "argument --sample: '0' must be > 0"),
    ("--cpu-share", "1.5", "argument --cpu-share: '1.5' is not within [0, 1]"),
    ("--end-early-ms", "-1", "argument --end-early-ms: '-1' must be >= 0"),
    ("--end-early-ms", "nan", "argument --end-early-ms: 'nan' must be >= 0"),
    ("--max-memory-mb", "0", "argument --max-memory-mb: '0' must be > 0"),
    ("--default-memory-mb", "lots", "argument --default-memory-mb: 'lots' is not a float"),
    ("--inputs", "-1", "argument --inputs: '-1' must be > 0"),
    ("--rate-scale", "0", "argument --rate-scale: --rate-scale: '0' must be > 0"),
    ("--iat", "poisson", "argument --iat: invalid Iat value: 'poisson'"),
    ("--map", "best", "argument --map: invalid MapMode value: 'best'"),
    ("--users", "team", "argument --users: invalid UsersBy value: 'team'"),
    ("--granularity", "hour", "argument --granularity: invalid choice: 'hour'"),
    ("--app-memory", "half", "argument --app-memory: invalid AppMemory value: 'half'"),
    ("--seed", "x", "argument --seed: invalid int value: 'x'"),
])
def test_every_option_rejects_a_bad_value_by_name(capsys, tmp_path, option, value, message):
    with pytest.raises(SystemExit) as stop:
        convert(capsys, "azure2019", "--trace", AZURE2019, "--out", tmp_path / "o", option, value)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (("--input", "a\tb"), "--input: 'a\\tb' holds a tab or a line break"),
    (("--min-memory-mb", "600"), "--min-memory-mb/--max-memory-mb/--min-duration-ms/--max-duration-ms: a minimum is "
                                 "above its maximum"),
    (("--manifest", "/nonexistent/manifest.yml"), "/nonexistent/manifest.yml: cannot read"),
])
def test_option_values_checked_after_parsing_are_named(capsys, tmp_path, args, message):
    code, _, stderr = convert(capsys, "azure2019", "--trace", AZURE2019, "--out", tmp_path / "o", *args)
    assert code == 2 and message in stderr, stderr
