"""The example actions, run as the platform runs them (``/usr/bin/python3``, standard library only),
on inputs from the deterministic generator; and their manifest."""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from actions import inputs
from loader import manifest as functions

ROOT = Path(__file__).resolve().parent.parent
ACTIONS = ROOT / "actions"
PLATFORM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

#: Loads an action file the way the OpenWhisk Python runtime does (a module, then main(args)).
DRIVER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("main__", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(module.main(json.loads(sys.argv[2]))))
"""


def run_action(path: Path, args: dict, storage: Path | None, activation: str = "a" * 32) -> dict:
    env = {"PATH": "/usr/bin:/bin", "__OW_ACTIVATION_ID": activation}
    if storage is not None:
        env["FAASLOAD_STORAGE"] = str(storage)
    done = subprocess.run([PLATFORM_PYTHON, "-I", "-c", DRIVER, str(path), json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("storage")
    inputs.generate(root / "faasload-inputs", {"image": 3, "audio": 3, "video": 3}, seed=7)
    return root


def storage_args(name: str) -> dict:
    return {"incont": "faasload-inputs", "object": name, "outcont": "faasload-outputs"}


def check_contract(result: dict, storage: Path, stem: str, action: str, ext: str) -> Path:
    assert set(result["times"]) == {"extract", "transform", "load"}
    assert all(isinstance(v, float) and v >= 0 for v in result["times"].values())
    output = storage / "faasload-outputs" / f"{stem}-{action}-{'a' * 32}.{ext}"
    assert output.stat().st_size == result["outputsize"] > 0
    return output


def test_inputs_are_deterministic_and_varied(tmp_path):
    first = inputs.generate(tmp_path / "a", {"image": 4, "audio": 4, "video": 4}, seed=3)
    again = inputs.generate(tmp_path / "b", {"image": 4, "audio": 4, "video": 4}, seed=3)
    other = inputs.generate(tmp_path / "c", {"image": 4, "audio": 4, "video": 4}, seed=4)
    assert [p.name for p in first] == [f"{n}.{ext}" for ext in ("jpg", "wav", "avi") for n in range(1, 5)]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, again))
    assert any(a.read_bytes() != c.read_bytes() for a, c in zip(first, other))
    for ext in ("jpg", "wav", "avi"):
        sizes = {p.stat().st_size for p in first if p.suffix == f".{ext}"}
        assert len(sizes) >= 3, f"{ext} sizes not varied: {sizes}"
    with wave.open(str(tmp_path / "a" / "1.wav")) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
    assert (tmp_path / "a" / "1.jpg").read_bytes().startswith(b"P6\n")
    avi = (tmp_path / "a" / "1.avi").read_bytes()
    assert avi[:4] == b"RIFF" and avi[8:12] == b"AVI " and struct.unpack_from("<I", avi, 4)[0] == len(avi) - 8


def test_inputs_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "actions.inputs", "--out", str(tmp_path / "in"), "--image", "2",
                           "--video", "1", "--seed", "5"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["1.avi", "1.jpg", "2.jpg"]
    assert "wrote 3 inputs" in done.stdout


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_image_resize(storage, mode):
    result = run_action(ACTIONS / "image_resize.py", {**storage_args("2.jpg"), "width": "40", "mode": mode}, storage)
    output = check_contract(result, storage, "2", "image_resize", "jpg")
    header = output.read_bytes().split(b"\n", 3)
    width, height = map(int, header[1].split())
    assert width == 40 == result["output"]["width"] and height == result["output"]["height"]
    assert len(header[3]) == 3 * width * height
    src_w, src_h = result["input"]["width"], result["input"]["height"]
    assert abs(height - src_h * 40 / src_w) <= 1


def test_audio_gain(storage):
    result = run_action(ACTIONS / "audio_gain.py", {**storage_args("1.wav"), "gain_db": -6.0, "rate": 4000},
                        storage)
    output = check_contract(result, storage, "1", "audio_gain", "wav")
    with wave.open(str(output)) as out, wave.open(str(storage / "faasload-inputs" / "1.wav")) as src:
        assert out.getframerate() == 4000
        assert out.getnframes() == src.getnframes() * 4000 // 8000
        peak_in = max(abs(v) for v in struct.unpack(f"<{src.getnframes()}h", src.readframes(src.getnframes())))
        peak_out = max(abs(v) for v in struct.unpack(f"<{out.getnframes()}h", out.readframes(out.getnframes())))
    assert peak_out < peak_in * 0.6     # -6 dB is a factor of 0.5


@pytest.mark.parametrize("kind", ["grayscale", "invert", "edges"])
def test_video_filter(storage, kind):
    result = run_action(ACTIONS / "video_filter.py", {**storage_args("3.avi"), "filter": kind, "step": 2}, storage)
    output = check_contract(result, storage, "3", "video_filter", "avi")
    assert result["output"]["frames"] == (result["input"]["frames"] + 1) // 2
    data = output.read_bytes()
    assert data[:4] == b"RIFF" and data.count(b"00db") >= result["output"]["frames"]
    if kind != "invert":
        first = data.index(b"00db", data.index(b"movi")) + 8
        frame = data[first:first + 3 * result["input"]["width"]]
        assert all(frame[i] == frame[i + 1] == frame[i + 2] for i in range(0, len(frame), 3))


@pytest.mark.parametrize("args,storage_set,message", [
    ({"object": "1.jpg", "outcont": "o"}, True, "missing parameter 'incont' (FaaSLoad passes incont, object, outcont)"),
    ({**storage_args("1.jpg"), "width": "wide"}, True, "bad parameter: invalid literal for int() with base 10: 'wide'"),
    ({**storage_args("1.jpg"), "mode": "cubic"}, True, "bad parameters: width=64 mode='cubic'"),
    (storage_args("1.jpg"), False, "FAASLOAD_STORAGE is not set"),
    (storage_args("9.jpg"), True, "FileNotFoundError: [Errno 2] No such file or directory"),
    ({**storage_args("1.jpg"), "incont": ".."}, True, "ValueError: invalid storage name '..'"),
    (storage_args("1.wav"), True, "ValueError: not a binary 8-bit PPM (P6) picture"),
])
def test_action_errors_are_reported(storage, args, storage_set, message):
    result = run_action(ACTIONS / "image_resize.py", args, storage if storage_set else None)
    assert message in result["error"]


def test_calibrated_burn_measures_cpu(storage):
    result = run_action(ACTIONS / "calibrated" / "burn.py", {"cpu_ms": 150}, None)
    assert 150 <= result["cpu_ms"] < 150 + 50
    assert result["wall_ms"] >= result["cpu_ms"] * 0.9


def test_calibrated_alloc_is_resident():
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = run_action(ACTIONS / "calibrated" / "alloc.py", {"mb": 48, "hold_ms": 50}, None)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert result["allocated_bytes"] == 48 << 20 and result["pages_touched"] == (48 << 20) // 4096
    assert result["held_ms"] >= 50
    assert peak_kib >= 48 * 1024 and peak_kib >= before


def test_bundled_manifests_are_valid():
    rows = {r.name: r for r in functions.read_functions(ACTIONS / "manifest.yml")}
    assert {r.input_kind for r in rows.values()} == {"image", "audio", "video"}
    assert all(r.package is None and Path(r.code_path).is_file() for r in rows.values())
    calibrated = {r.name: r for r in functions.read_functions(ACTIONS / "calibrated" / "manifest.yml")}
    assert sorted(calibrated) == ["alloc", "burn", "replay"]
    assert all(Path(r.code_path).is_file() for r in calibrated.values())


def test_manifest_parameter_ranges_are_accepted_by_the_actions(storage):
    """The extremes of every spec in the manifest run without error."""
    rows = functions.read_functions(ACTIONS / "manifest.yml")
    sample = {"image": "1.jpg", "audio": "1.wav", "video": "1.avi"}
    for row in rows:
        for pick in (0, -1):
            args = {spec.name: spec.values[pick] for spec in functions.parameter_specs(row)}
            result = run_action(Path(row.code_path), {**storage_args(sample[row.input_kind]), **args}, storage)
            assert "error" not in result, (row.name, args, result)


#: Loads the replay action once and runs it on each argument set, as a warm container does; an
#: argument set's ``started_ms_ago`` is not passed: it sets ``__OW_DEADLINE`` as a platform that
#: started the run that long ago would (its start + the ``timeout_ms`` argument).
WARM_DRIVER = """
import importlib.util, json, os, sys, time
spec = importlib.util.spec_from_file_location("main__", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

def call(args):
    ago_ms = args.pop("started_ms_ago", None)
    if ago_ms is not None:
        os.environ["__OW_DEADLINE"] = str(int(time.time() * 1000) - ago_ms + int(args["timeout_ms"]))
    return module.main(args)

print(json.dumps([call(args) for args in json.loads(sys.argv[2])]))
"""
MIB = 1 << 20


def run_warm(calls: list[dict], preexec=None) -> list[dict]:
    done = subprocess.run([PLATFORM_PYTHON, "-I", "-c", WARM_DRIVER, str(ACTIONS / "calibrated" / "replay.py"),
                           json.dumps(calls)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120, preexec_fn=preexec, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_calibrated_replay_holds_memory_across_invocations_and_lasts_its_duration():
    grow, shrink, again = run_warm([{"memory_mb": "80", "duration_ms": "150", "cpu_share": "0.5"},
                                    {"memory_mb": "40", "duration_ms": "60", "cpu_share": "0"},
                                    {"memory_mb": "40", "duration_ms": "20"}])
    assert grow["measured"] == "rss"  # not in a cgroup with a memory limit
    for result, target_mb, duration_ms in ((grow, 80, 150), (shrink, 40, 60), (again, 40, 20)):
        assert abs(result["memory_bytes"] - target_mb * MIB) <= 2 * MIB, result
        assert result["wall_ms"] >= duration_ms
    assert grow["held_before_bytes"] == 0 and shrink["held_before_bytes"] == grow["held_bytes"]
    assert again["held_before_bytes"] == shrink["held_bytes"]  # kept between invocations
    assert abs(again["held_bytes"] - shrink["held_bytes"]) <= MIB  # same target: (almost) nothing to change
    assert grow["cpu_ms"] > shrink["cpu_ms"]
    bad = run_action(ACTIONS / "calibrated" / "replay.py", {"memory_mb": "-1"}, None)
    assert bad["error"].startswith("bad parameters: memory_mb=-1.0")


def test_calibrated_replay_times_its_duration_from_the_platforms_start():
    """Warm runs last ``duration_ms`` from the platform's start (deadline − timeout), the time
    before ``main`` included; a container's first run, and a run without ``timeout_ms``, from
    ``main``'s own start."""
    first, warm, overdue, untimed = run_warm([
        {"memory_mb": "0", "duration_ms": "100", "timeout_ms": "60000", "started_ms_ago": 40},
        {"memory_mb": "0", "duration_ms": "100", "timeout_ms": "60000", "started_ms_ago": 40},
        {"memory_mb": "0", "duration_ms": "100", "timeout_ms": "60000", "started_ms_ago": 250},
        {"memory_mb": "0", "duration_ms": "100", "started_ms_ago": None}])
    assert first["timed_from"] == "action" and first["started_late_ms"] is None and first["wall_ms"] >= 100
    assert warm["timed_from"] == "platform" and 40 <= warm["started_late_ms"] < 60, warm
    assert abs(warm["wall_ms"] + warm["started_late_ms"] - 100) <= 2, warm  # it ends 100 ms after the start
    assert overdue["timed_from"] == "platform" and overdue["wall_ms"] < 10, overdue  # already late: at once
    assert untimed["timed_from"] == "action" and untimed["wall_ms"] >= 100
    bad = run_action(ACTIONS / "calibrated" / "replay.py", {"timeout_ms": "0"}, None)
    assert "timeout_ms > 0" in bad["error"]


def test_calibrated_replay_ends_early_by_what_the_platform_adds_after_it():
    """``end_early_ms`` takes the platform's time after ``main`` out of the duration (never below 0)."""
    plain, early, more_than_all = run_warm([
        {"memory_mb": "0", "duration_ms": "200", "cpu_share": "0"},
        {"memory_mb": "0", "duration_ms": "200", "cpu_share": "0", "end_early_ms": "100"},
        {"memory_mb": "0", "duration_ms": "10", "cpu_share": "0", "end_early_ms": "25"}])
    assert plain["wall_ms"] >= 200 and 100 <= early["wall_ms"] < 180, (plain, early)
    assert more_than_all["wall_ms"] < 5, more_than_all
    bad = run_action(ACTIONS / "calibrated" / "replay.py", {"end_early_ms": "-1"}, None)
    assert "end_early_ms >= 0" in bad["error"]


def test_calibrated_replay_targets_its_containers_memory(cgroups):
    dirs = cgroups.create()
    memory_dir = dirs.get("memory", dirs.get(""))
    limit_file = "memory.limit_in_bytes" if "memory" in dirs else "memory.max"
    (memory_dir / limit_file).write_text(str(256 * MIB))
    procs = [d / "cgroup.procs" for d in dirs.values()]

    def enter():
        for path in procs:
            path.write_text(str(os.getpid()))
    usage_file = memory_dir / ("memory.usage_in_bytes" if "memory" in dirs else "memory.current")
    (result,) = run_warm([{"memory_mb": "96", "duration_ms": "50"}], preexec=enter)
    assert result["measured"] == "cgroup"
    assert abs(result["memory_bytes"] - 96 * MIB) <= 2 * MIB, result
    assert int(usage_file.read_text()) < 96 * MIB  # released when the process ended
