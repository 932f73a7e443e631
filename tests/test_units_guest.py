"""The systemd user units for real, as a user installs and starts them: in the cgroup v2 guest
(`tests/vm/run.sh --user`), as the unprivileged user `faasload` (lingering, its own systemd user
manager), with the checkout at ~/faasload and its environment ~/faasload/.venv made by
scripts/setup.sh (the guest's image ran it offline; here it must find nothing to do).

The test copies the current checkout over ~/faasload, runs scripts/install-units.sh, starts a
broker and localwhisk (scripts/stack.sh, notifying the monitor unit), creates the trace's user,
deploys the actions, points ~/.config/faasload/loader.yml at a small trace directory, then
`systemctl --user start faasload-monitor faasload-loader` and waits for the loader unit to end.
It checks the unit's exit, its journal (the summary; a warning found by `-p warning`; no kafka
INFO lines) and the rows in the embedded PostgreSQL. It changes the user's home and units, so it
runs only where run.sh says the machine is throw-away (FAASLOAD_TEST_VM_GUEST=1).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from faasload.cgroup_delegation import systemd_running
from tests.slowness import scaled_s

# A minute or two in the guest when it is quiet; a loaded host makes it several times longer.
pytestmark = [pytest.mark.vm, pytest.mark.timeout(scaled_s(90))]

ROOT = Path(__file__).resolve().parent.parent
HOME = Path.home()
CHECKOUT = HOME / "faasload"
WORK = HOME / "units-test"
# What a clone would not have: never copied over the user's checkout.
NOT_COPIED = (".git", ".venv", ".state", "__pycache__", "*.egg-info", "build", "test-output", "bench/results")
# One user, one action, four invocations about a second apart, and an empty trace: a warning.
TRACE = "1.0\t1.wav\tgain_db:-5.71\trate:11025\n1.0\t2.wav\tgain_db:8.67\trate:8000\n" \
        "1.0\t3.wav\tgain_db:4.48\trate:4000\n1.0\t4.wav\tgain_db:9.60\trate:16000\n"
INVOCATIONS = 4
UNITS = ("faasload-monitor", "faasload-loader")


def _env() -> dict[str, str]:
    """A login-like environment: the system's PATH (never the test's environment), no PYTHON* variables."""
    keep = ("HOME", "USER", "LOGNAME", "LANG", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.setdefault("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
    return {**env, "PATH": "/usr/local/bin:/usr/bin:/bin", "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": "/dev/null"}


def _run(*argv: str | Path, timeout_s: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], env=_env(), cwd=HOME, capture_output=True, text=True,
                            timeout=scaled_s(timeout_s))
    if check:
        assert result.returncode == 0, f"{shlex.join(map(str, argv))}: exit {result.returncode}\n" \
                                       f"{result.stdout}\n{result.stderr}"
    return result


def _unit(name: str) -> dict[str, str]:
    shown = _run("systemctl", "--user", "show", name, "-p", "ActiveState,SubState,Result,ExecMainCode,ExecMainStatus")
    return dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)


def _journal_of(unit: str, *args: str) -> list[str]:
    return _run("journalctl", "--user", "-u", unit, "--no-pager", "-o", "cat", *args).stdout.splitlines()


def _journal(*args: str) -> list[str]:
    return _journal_of("faasload-loader", *args)


def _copy_checkout() -> None:
    """The current checkout over the user's copy, as `git pull` would bring it."""
    excludes = " ".join(f"--exclude={shlex.quote(p)}" for p in NOT_COPIED)
    subprocess.run(f"tar -C {shlex.quote(str(ROOT))} {excludes} -cf - . | tar -C {shlex.quote(str(CHECKOUT))} -xf -",
                   shell=True, check=True, timeout=scaled_s(30))


def _configure_loader(config: Path, stack: dict[str, str]) -> None:
    """What the user edits in the copied example (`next: edit ...` of install-units.sh)."""
    data = yaml.safe_load(config.read_text())
    data["openwhisk"]["apihost"] = stack["APIHOST"]
    data["openwhisk"]["authkeys"] = "~/units-test/authkeys"
    data["openwhisk"]["user_events"]["bootstrap_servers"] = [stack["BROKER"]]
    data["injection"]["tracedir"] = "~/units-test/traces"
    data["completion"]["final_deadline_s"] = scaled_s(30)
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def test_units_run_an_injection_under_the_users_systemd():
    if os.environ.get("FAASLOAD_TEST_VM_GUEST") != "1" or os.geteuid() == 0:
        pytest.skip("installs units into the home directory: only as the guest's user (tests/vm/run.sh --user)")
    if not systemd_running() or not (CHECKOUT / ".venv" / "bin" / "python").exists():
        pytest.skip("needs systemd and ~/faasload/.venv (the guest of tests/vm/build.sh)")
    started = time.monotonic()
    timings: list[str] = []

    def lap(what: str) -> None:
        timings.append(f"{what}: {time.monotonic() - started:.1f} s")

    _copy_checkout()
    setup = _run(CHECKOUT / "scripts" / "setup.sh", "--no-dev", timeout_s=60)
    # nothing to do (not even a system package to suggest: the guest has them)
    assert [line for line in setup.stderr.splitlines() if not line.startswith("setup: ready in ")] == [], setup.stderr
    lap("checkout copied, setup.sh")

    installed = _run(CHECKOUT / "scripts" / "install-units.sh")
    assert "systemctl --user daemon-reload: done" in installed.stdout, installed.stdout + installed.stderr
    unit_dir = HOME / ".config" / "systemd" / "user"
    python = CHECKOUT / ".venv" / "bin" / "python"
    for name in UNITS:
        exec_start = next(line for line in (unit_dir / f"{name}.service").read_text().splitlines()
                          if line.startswith("ExecStart="))
        assert exec_start.startswith(f"ExecStart={python} -m {name.removeprefix('faasload-')} --config {HOME}/"), exec_start
    lap("install-units.sh")

    runtime_dir = Path(_env()["XDG_RUNTIME_DIR"])
    state = WORK / "stack"
    stack_sh = CHECKOUT / "scripts" / "stack.sh"
    _run(stack_sh, "up", "--state", state, "--monitor-socket", runtime_dir / "wdm" / "notif", timeout_s=120)
    try:
        stack = {key: shlex.split(value)[0] if value else "" for key, value in
                 (line.split("=", 1) for line in (state / "stack.env").read_text().splitlines())}
        lap("stack.sh up (broker, localwhisk)")
        traces = WORK / "traces"
        traces.mkdir(parents=True)
        (traces / "alice-audio_gain-256-4").write_text(TRACE)
        (traces / "alice-audio_gain-256-empty").write_text("")
        config = HOME / ".config" / "faasload" / "loader.yml"
        _configure_loader(config, stack)
        _run(CHECKOUT / "scripts" / "create_users.sh", "--config", config,
             f"--localwhisk-arg=--set=state:dir={stack['LOCALWHISK_STATE']}")
        _run(CHECKOUT / "scripts" / "deploy_actions.sh", "--config", config, "--manifest", CHECKOUT / "actions" / "manifest.yml")
        inputs = Path(stack["STORAGE_DIR"])
        _run(python, "-m", "actions.inputs", "--out", inputs / "faasload-inputs", "--audio", str(INVOCATIONS))
        (inputs / "faasload-outputs").mkdir(exist_ok=True)
        lap("user, actions, inputs")

        _run("systemctl", "--user", "start", *UNITS)
        deadline = time.monotonic() + scaled_s(60)
        while (state_now := _unit("faasload-loader"))["ActiveState"] in ("active", "activating", "deactivating"):
            assert time.monotonic() < deadline, f"the loader unit still runs: {state_now}\n" + "\n".join(_journal())
            time.sleep(1)
        lap("systemctl --user start: the loader unit ended")
        monitor = _unit("faasload-monitor")  # Type=notify: active only once it sent READY=1
        journal = _journal()
        warnings = _journal("-p", "warning")
        print("\n".join(["journalctl --user -u faasload-loader:", *journal,
                         "journalctl --user -u faasload-loader -p warning:", *warnings,
                         "journalctl --user -u faasload-monitor:", *_journal_of("faasload-monitor")]))

        assert state_now["Result"] == "success" and state_now["ExecMainStatus"] == "0", \
            f"{state_now}\n" + "\n".join(journal)
        assert monitor["ActiveState"] == "active", monitor
        ended = [line for line in journal if " ended: " in line and line.startswith("INFO loader.experiment: experiment ")]
        assert ended and ended[-1].endswith(f"ended: success {INVOCATIONS}"), "\n".join(journal)
        assert any(line.startswith("experiment '") and "(id " in line for line in journal), "\n".join(journal)
        # the monitor unit sampled every activation (localwhisk notified its socket)
        assert f"monitor resources: ok {INVOCATIONS} (0 activations without samples)" in journal, "\n".join(journal)
        empty_trace = f"{traces / 'alice-audio_gain-256-empty'}: no invocation (empty trace)"
        assert any(line.endswith(empty_trace) for line in warnings), "\n".join(warnings)
        assert not any(line.startswith("INFO ") for line in warnings), "\n".join(warnings)
        assert not any(line.startswith("INFO kafka") for line in journal), "\n".join(journal)

        rows = _run(python, "-m", "loader.psql", "--config", config, "--", "-tA", "-c",
                    "SELECT status, count(*) FROM runs GROUP BY status ORDER BY status", timeout_s=60)
        assert rows.stdout.split() == [f"success|{INVOCATIONS}"], rows.stdout + rows.stderr
        lap("rows queried (loader.psql)")
        print("\n".join(timings))
    finally:
        subprocess.run(["systemctl", "--user", "stop", *UNITS], env=_env(), timeout=scaled_s(30), check=False)
        subprocess.run([stack_sh, "down", "--state", state], env=_env(), timeout=scaled_s(30), check=False)
