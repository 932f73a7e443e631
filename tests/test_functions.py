"""The wskdeploy-manifest helper: parsing, every invalid case's message, the database load, the command."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from loader import DatabaseConfiguration, functions
from loader.manifest import ManifestError, ParameterSpec, SpecKind
from loader.storage import experiments

ROOT = Path(__file__).resolve().parent.parent

VALID = """
project:
  name: faasload
  packages:
    default:
      actions:
        resize:
          function: actions/image_resize.py
          runtime: python:3.11
          main: main
          limits: {memorySize: 256, timeout: 60000, logSize: 1, concurrentActivations: 1, userInvocationRate: 5}
          annotations:
            input_kind: image
            parameters:
              - {name: width, range_int: [16, 512]}
              - {name: sigma, range_float: [0.5, 3]}
              - {name: mode, ensemble: [nearest, bilinear]}
        probe:
          docker: example/probe:1
          inputs:
            greeting: hello
            retries: {type: integer, description: how many, value: 3}
            verbose: {type: boolean, default: false}
    media:
      actions:
        gain:
          function: actions/audio_gain.py
          annotations: {input_kind: audio}
"""


def write(tmp_path: Path, text: str, name: str = "manifest.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_manifest_with_project_wrapper(tmp_path):
    path = write(tmp_path, VALID)
    rows = {r.name: r for r in functions.read_functions(path)}
    assert sorted(rows) == ["gain", "probe", "resize"]
    resize = rows["resize"]
    assert resize.package is None                       # "default" = namespace root
    assert resize.runtime == "python:3.11" and resize.main == "main"
    assert resize.code_path == str((tmp_path / "actions/image_resize.py").resolve())
    assert (resize.memory_mb, resize.timeout_ms, resize.log_size_mb, resize.concurrency) == (256, 60000, 1, 1)
    assert resize.input_kind == "image"
    assert resize.parameter_specs == ({"name": "width", "range_int": [16, 512]},
                                      {"name": "sigma", "range_float": [0.5, 3.0]},
                                      {"name": "mode", "ensemble": ["nearest", "bilinear"]})
    assert resize.manifest_path == str(path.resolve())
    assert rows["probe"].image == "example/probe:1" and rows["probe"].runtime == "blackbox"
    assert rows["gain"].package == "media" and rows["gain"].input_kind == "audio"
    assert rows["gain"].parameter_specs == ()


def test_top_level_packages_and_typed_specs(tmp_path):
    path = write(tmp_path, """
        packages:
          default:
            actions:
              a: {function: a.py, annotations: {parameters: [{name: n, range_int: [3, 3]}]}}
        """)
    (row,) = functions.read_functions(path)
    assert functions.parameter_specs(row) == (ParameterSpec("n", SpecKind.RANGE_INT, (3, 3)),)
    assert row.input_kind is None


ACTION = "packages:faasload:actions:resize"
INVALID = [
    ("[1, 2]", "", "expected a mapping with `project:` or `packages:`, got list"),
    ("project: 3", "project", "expected a mapping, got int"),
    ("other: 1", "packages", "expected a non-empty mapping of packages"),
    ("packages: [a]", "packages", "expected a mapping, got list"),
    ("packages: {faasload: [x]}", "packages:faasload", "expected a mapping, got list"),
    ("packages: {faasload: {actions: [x]}}", "packages:faasload:actions", "expected a mapping of actions, got list"),
    ("packages: {faasload: {actions: {}}}", "packages", "no action in any package"),
    ("packages: {faasload: {actions: {resize: 3}}}", ACTION, "expected a mapping, got int"),
    ("packages: {faasload: {actions: {resize: {main: m}}}}", ACTION, "expected one of function, code or docker"),
    ("packages: {faasload: {actions: {resize: {function: a.py, docker: img}}}}", f"{ACTION}:docker",
     "cannot be combined with function"),
    ("packages: {faasload: {actions: {resize: {code: 'x=1'}}}}", f"{ACTION}:runtime", "required with inline `code`"),
    ("packages: {faasload: {actions: {resize: {function: 3}}}}", f"{ACTION}:function", "expected a string, got int"),
    ("packages: {faasload: {actions: {resize: {function: a.py, limits: [1]}}}}", f"{ACTION}:limits",
     "expected a mapping, got list"),
    ("packages: {faasload: {actions: {resize: {function: a.py, limits: {memorySize: 256 MB}}}}}",
     f"{ACTION}:limits:memorySize", "expected an integer >= 1 (no unit string), got '256 MB'"),
    ("packages: {faasload: {actions: {resize: {function: a.py, limits: {timeout: 0}}}}}",
     f"{ACTION}:limits:timeout", "expected an integer >= 1 (no unit string), got 0"),
    ("packages: {faasload: {actions: {resize: {function: a.py, limits: {memory: 256}}}}}",
     f"{ACTION}:limits:memory", "unknown limit (expected one of memorySize, timeout, logSize, concurrentActivations)"),
    ("packages: {faasload: {actions: {resize: {function: a.py, annotations: [x]}}}}", f"{ACTION}:annotations",
     "expected a mapping, got list"),
    ("packages: {faasload: {actions: {resize: {function: a.py, annotations: {input_kind: text}}}}}",
     f"{ACTION}:annotations:input_kind", "expected one of image, audio, video, got 'text'"),
    ("packages: {faasload: {actions: {resize: {function: a.py, annotations: {parameters: {a: 1}}}}}}",
     f"{ACTION}:annotations:parameters", "expected a list of parameter specs, got dict"),
    ("packages: {faasload: {actions: {resize: {function: a.py, inputs: [a]}}}}", f"{ACTION}:inputs",
     "expected a mapping of parameter names to values, got list"),
    ("packages: {faasload: {actions: {resize: {function: a.py, inputs: {a: [1, 2]}}}}}", f"{ACTION}:inputs:a",
     "expected a string, number or boolean, got list"),
    ("packages: {faasload: {actions: {resize: {function: a.py, inputs: {a: {type: string}}}}}}",
     f"{ACTION}:inputs:a", "expected a value, or a mapping with `value:` or `default:`"),
]
SPEC = f"{ACTION}:annotations:parameters[1]"
INVALID_SPECS = [
    ("x", SPEC, "expected a mapping {name, range_int|range_float|ensemble}, got str"),
    ("{range_int: [1, 2]}", f"{SPEC}:name", "expected a non-empty string, got null"),
    ("{name: object, range_int: [1, 2]}", f"{SPEC}:name",
     "'object' is reserved: FaaSLoad passes incont, object, outcont itself"),
    ("{name: w, range_int: [1, 2], ensemble: [1]}", SPEC,
     "parameter 'w': expected exactly one of range_int, range_float, ensemble, got 2"),
    ("{name: w}", SPEC, "parameter 'w': expected exactly one of range_int, range_float, ensemble, got none"),
    ("{name: w, range: [1, 2]}", f"{SPEC}:range",
     "unknown key (expected name and one of range_int, range_float, ensemble)"),
    ("{name: w, range_int: [5, 1]}", f"{SPEC}:range_int",
     "expected [min, max] with min <= max (integers), got [5, 1]"),
    ("{name: w, range_int: [1.5, 2]}", f"{SPEC}:range_int",
     "expected [min, max] with min <= max (integers), got [1.5, 2]"),
    ("{name: w, range_int: [1, 2, 3]}", f"{SPEC}:range_int",
     "expected [min, max] with min <= max (integers), got [1, 2, 3]"),
    ("{name: w, range_float: [a, 2]}", f"{SPEC}:range_float",
     "expected [min, max] with min <= max (numbers), got ['a', 2]"),
    ("{name: w, range_float: [.nan, 2]}", f"{SPEC}:range_float",
     "expected [min, max] with min <= max (numbers), got [nan, 2]"),
    ("{name: w, ensemble: []}", f"{SPEC}:ensemble", "expected a non-empty list of values"),
    ("{name: w, ensemble: [a, [b]]}", f"{SPEC}:ensemble[1]", "expected a string, number or boolean, got list"),
    ("{name: first, ensemble: [a]}", f"{SPEC}:name", "duplicate parameter 'first'"),
    ('{name: w, ensemble: [a, "b\\0c"]}', f"{SPEC}:ensemble[1]",
     "holds a NUL byte (\\x00), which the database cannot store"),
    ('{name: "w\\0", ensemble: [a]}', f"{SPEC}:name", "holds a NUL byte (\\x00), which the database cannot store"),
]


def spec_manifest(spec: str) -> str:
    return ("packages: {faasload: {actions: {resize: {function: a.py, annotations: {parameters: "
            "[{name: first, range_int: [1, 2]}, " + spec + "]}}}}}")


@pytest.mark.parametrize("text,key,message", INVALID + [
    (spec_manifest(spec), key, message) for spec, key, message in INVALID_SPECS])
def test_invalid_manifest_names_file_action_and_key(tmp_path, text, key, message):
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as info:
        functions.read_functions(path)
    expected = f"{path}: {key}: {message}" if key else f"{path}: {message}"
    assert str(info.value) == expected


def test_duplicate_action_across_packages(tmp_path):
    path = write(tmp_path, "packages: {a: {actions: {x: {function: x.py}}}, b: {actions: {x: {function: y.py}}}}")
    with pytest.raises(ManifestError, match=r"packages:b:actions:x: action name 'x' already defined at "
                                            r"packages:a:actions:x"):
        functions.read_functions(path)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ManifestError, match=r"missing\.yml: cannot read: No such file or directory"):
        functions.read_functions(tmp_path / "missing.yml")
    path = write(tmp_path, "packages:\n  a: [unclosed\n")
    with pytest.raises(ManifestError, match=r"manifest\.yml: line 3: not valid YAML"):
        functions.read_functions(path)


def test_load_to_database_upserts(tmp_path, database: DatabaseConfiguration):
    path = write(tmp_path, VALID)
    assert functions.load_to_database(functions.read_functions(path), database) == 3
    changed = yaml.safe_load(VALID)
    changed["project"]["packages"]["default"]["actions"]["resize"]["limits"]["memorySize"] = 512
    path.write_text(yaml.safe_dump(changed))
    assert functions.load_to_database(functions.read_functions(path), database) == 3
    conn = database.connect()
    try:
        rows = {r.name: r for r in experiments.fetch_functions(conn)}
    finally:
        conn.close()
    assert [*rows] == ["gain", "probe", "resize"]
    assert rows["resize"].memory_mb == 512
    assert rows["probe"].inputs == (("greeting", "hello"), ("retries", 3), ("verbose", False))
    assert rows["resize"].inputs == ()
    assert rows["resize"].parameter_specs == ({"name": "width", "range_int": [16, 512]},
                                              {"name": "sigma", "range_float": [0.5, 3.0]},
                                              {"name": "mode", "ensemble": ["nearest", "bilinear"]})


def test_command_writes_functions(tmp_path, database: DatabaseConfiguration):
    path = write(tmp_path, VALID)
    config = tmp_path / "loader.yml"
    config.write_text(yaml.safe_dump({"database": {"host": database.host, "port": database.port,
                                                   "user": database.user, "database": database.database}}))
    done = subprocess.run([sys.executable, "-m", "loader.functions", str(path), "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "3 functions written" in done.stdout and "gain, probe, resize" in done.stdout
    bad = write(tmp_path, "packages: {p: {actions: {a: {function: a.py, limits: {timeout: -1}}}}}", "bad.yml")
    done = subprocess.run([sys.executable, "-m", "loader.functions", str(bad), "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{bad}: packages:p:actions:a:limits:timeout: expected an integer >= 1" in done.stderr
