"""Configuration: typed parsing, errors naming the file and key, docs in sync with the code."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from faasload import logsetup, render_config
from faasload.config import ConfigError, defaults
from loader import config as loader_config
from monitor import config as monitor_config

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path, text, name="loader.yml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_files_load_with_defaults():
    cfg = loader_config.load()
    assert cfg == defaults(loader_config.LoaderConfig)
    assert cfg.generation.nbinputs.image == 10 and cfg.openwhisk.tls_verify is True
    assert monitor_config.load() == defaults(monitor_config.MonitorConfig)


def test_empty_file_gives_defaults(tmp_path):
    assert loader_config.load(_write(tmp_path, "")) == defaults(loader_config.LoaderConfig)


def test_docs_and_config_files_agree_with_schema():
    assert render_config.main(["--check"]) == 0, "run: python -m faasload.render_config"


def test_misspelled_key_names_file_and_key(tmp_path):
    path = _write(tmp_path, "injection:\n  wrokers: 3\n")
    with pytest.raises(ConfigError) as err:
        loader_config.load(path)
    assert str(err.value).startswith(f"{path}: injection:wrokers: unknown key")


@pytest.mark.parametrize("text, key, message", [
    ("injection:\n  workers: ten\n", "injection:workers", "expected an integer, got 'ten'"),
    ("openwhisk:\n  tls_verify: 'yes'\n", "openwhisk:tls_verify", "expected true or false"),
    ("generation:\n  interinvocationtime: -1\n", "generation:interinvocationtime", "must be >= 0"),
    ("completion:\n  poll_interval_s: 0\n", "completion:poll_interval_s", "must be > 0"),
    ("openwhisk:\n  user_events:\n    bootstrap_servers: kafka:9092\n",
     "openwhisk:user_events:bootstrap_servers", "expected a list"),
    ("database:\n  port: 70000\n", "database:port", "must be <= 65535"),
    ("generation: 3\n", "generation", "expected a mapping"),
])
def test_bad_values_are_reported_with_key_path(tmp_path, text, key, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        loader_config.load(path)
    assert str(err.value).startswith(f"{path}: {key}: ")
    assert message in str(err.value)


@pytest.mark.parametrize("text, key, message", [
    ("completion:\n  final_deadline_s: .nan\n", "completion:final_deadline_s", "expected a finite number, got nan"),
    ("openwhisk:\n  request_timeout_s: .inf\n", "openwhisk:request_timeout_s", "expected a finite number, got inf"),
    ("injection:\n  late_threshold_ms: -.inf\n", "injection:late_threshold_ms", "expected a finite number, got -inf"),
    ("completion:\n  event_timeout_s: 1.0e+10\n", "completion:event_timeout_s",
     "must be <= 31622400 (366 days), got 10000000000.0"),
    ("openwhisk:\n  apihost: localhost:3233\n", "openwhisk:apihost",
     "expected an http:// or https:// URL (scheme://host[:port]), got 'localhost:3233'"),
    ("openwhisk:\n  apihost: 'http://127.0.0.1:32x3'\n", "openwhisk:apihost",
     "port '32x3' is not a number from 1 to 65535"),
    ("openwhisk:\n  apihost: 'https://'\n", "openwhisk:apihost", "no host in 'https://'"),
    ("openwhisk:\n  apihost: 'http://ow:3233/api?x=1'\n", "openwhisk:apihost",
     "a query or fragment has no place in an API host URL"),
    ("logging:\n  root:\n    level: VERBOSE\n", "logging:root:level",
     "expected a logging level (CRITICAL, ERROR, WARNING, INFO, DEBUG, NOTSET or a number), got 'VERBOSE'"),
    ("logging:\n  loggers:\n    kafka:\n      level: debug\n", "logging:loggers:kafka:level",
     "expected a logging level"),
    ("logging:\n  handlers:\n    stderr:\n      level: 7.5\n", "logging:handlers:stderr:level",
     "expected a logging level"),
    ("logging:\n  root: INFO\n", "logging:root", "expected a mapping, got 'INFO'"),
])
def test_values_that_would_fail_later_are_refused_at_load(tmp_path, text, key, message):
    """Issue 16 item 7: nan, infinities, absurd durations, a malformed apihost, a bad logging level."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        loader_config.load(path)
    assert str(err.value).startswith(f"{path}: {key}: ") and message in str(err.value), str(err.value)


@pytest.mark.parametrize("module, config_name", [("loader", "loader.yml"), ("monitor", "monitor.yml"),
                                                 ("localwhisk", "localwhisk.yml")])
def test_daemons_name_the_key_of_a_bad_logging_level(tmp_path, module, config_name):
    path = _write(tmp_path, "logging:\n  root:\n    level: LOUD\n", config_name)
    result = subprocess.run([sys.executable, "-m", module, "--config", str(path), "--validate"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"configuration error: {path}: logging:root:level: expected a logging level" in result.stderr


def test_a_logging_section_dictconfig_refuses_names_the_section(tmp_path):
    with pytest.raises(ConfigError, match=r"^cfg.yml: logging: Unable to configure handler 'x'"):
        logsetup.apply({"handlers": {"x": {"class": "no.such.Handler"}}}, source="cfg.yml")


def test_invalid_yaml_names_line(tmp_path):
    path = _write(tmp_path, "injection:\n  workers: [1\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+"):
        loader_config.load(path)


def test_paths_expand_home_and_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("FL_TRACES", str(tmp_path))
    cfg = loader_config.load(_write(tmp_path, "injection:\n  tracedir: $FL_TRACES/t\nopenwhisk:\n  authkeys: ~/keys\n"))
    assert cfg.injection.tracedir == tmp_path / "t"
    assert cfg.openwhisk.authkeys == Path(os.path.expanduser("~/keys"))


def test_an_unset_variable_in_a_path_names_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("FL_UNSET", raising=False)
    path = _write(tmp_path, "injection:\n  tracedir: ${FL_UNSET}/t\n")
    with pytest.raises(ConfigError, match=rf"{path}: injection:tracedir: environment variable FL_UNSET is not set"):
        loader_config.load(path)


def test_missing_authkeys_directory_is_reported(tmp_path):
    path = _write(tmp_path, f"openwhisk:\n  authkeys: {tmp_path}/nokeys\ninjection:\n  tracedir: {tmp_path}\n")
    cfg = loader_config.load(path)
    with pytest.raises(ConfigError, match=rf"{path}: openwhisk:authkeys: directory does not exist: {tmp_path}/nokeys"):
        loader_config.check_directories(cfg, path, mode="injection")


def test_overrides_are_validated(tmp_path):
    cfg = loader_config.load(_write(tmp_path, ""), overrides={"injection:workers": 5})
    assert cfg.injection.workers == 5
    with pytest.raises(ConfigError, match="injection:workers: expected an integer"):
        loader_config.load(_write(tmp_path, ""), overrides={"injection:workers": "x"})


def test_logging_section_only_switches_level():
    merged = logsetup.merged({"root": {"level": "DEBUG"}})
    assert merged["root"] == {"level": "DEBUG", "handlers": ["stderr"]}
    assert merged["handlers"]["stderr"]["stream"] == "ext://sys.stderr"


@pytest.mark.parametrize("module, config_name", [("loader", "loader.yml"), ("monitor", "monitor.yml")])
def test_daemon_rejects_misspelled_key_with_one_line(tmp_path, module, config_name):
    path = _write(tmp_path, "bogus_key: 1\n", config_name)
    result = subprocess.run([sys.executable, "-m", module, "--config", str(path), "--validate"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: bogus_key: unknown key" in lines[0]


@pytest.mark.parametrize("module", ["loader", "monitor"])
def test_daemon_help_describes_options(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert "--config" in result.stdout and "--set" in result.stdout


def test_the_demos_loader_configuration_loads(monkeypatch, tmp_path):
    """demo/loader.yml is read by scripts/demo.sh on a fresh machine only: a key the schema no
    longer has must fail here, not there."""
    monkeypatch.setenv("FAASLOAD_DEMO_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("FAASLOAD_DEMO_ROOT", str(ROOT))
    cfg = loader_config.load(ROOT / "demo" / "loader.yml")
    assert cfg.completion.fetches_in_flight == 16 and cfg.injection.tracedir == ROOT / "demo" / "traces"
