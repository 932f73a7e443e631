"""The live progress line: unit tests on a fake terminal, and the loader under a real pseudo-terminal."""

from __future__ import annotations

import io
import logging
import os
import pty
import re
import subprocess
import sys
import threading
import uuid

import pytest

from loader.progress import ERASE, LiveProgress, clock_text
from loader.storage.rows import RunStatus
from loader.storage.summary import RunStats
from tests.injector_support import ECHO_ACTION, ROOT, Setup


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_clock_text():
    assert (clock_text(0), clock_text(61.9), clock_text(3600 + 62)) == ("0:00", "1:01", "1:01:02")


def test_the_line_shows_rate_counts_recent_lateness_and_eta():
    stats = RunStats(late_threshold_us=10_000, planned_total=100)
    terminal = Terminal()
    live = LiveProgress.on_terminal(stats, 60.0, terminal)
    assert live is not None and LiveProgress.on_terminal(stats, 60.0, io.StringIO()) is None
    for lateness_us in [100] * 20:
        stats.record_sent(lateness_us)
    live.tick(1.0, pending=5)
    for lateness_us in [300] * 9 + [50_000]:
        stats.record_sent(lateness_us)
    stats.record_terminal("echo", RunStatus.THROTTLED)
    stats.record_terminal("echo", RunStatus.SUCCESS, has_record=True)
    live.tick(1.2, pending=5)            # too soon: not redrawn
    live.tick(3.0, pending=5)
    frames = terminal.getvalue().split(ERASE)[1:]
    assert frames == [
        "0:01/1:00 · 20/100 issued · 20.0/s · 0 completed · 0 late · 0 throttled · 0 errors · "
        "p99 lateness 10 s 0.1 ms · ETA 0:59",
        "0:03/1:00 · 30/100 issued · 10.0/s · 2 completed · 1 late · 1 throttled · 1 errors · "
        "p99 lateness 10 s 50 ms · ETA 0:57"]
    live.close()
    assert terminal.getvalue().endswith("\n")


def test_log_records_erase_the_line_first():
    terminal = Terminal()
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        live = LiveProgress(terminal, RunStats(10_000, 3), planned_duration_s=None)
        live.tick(0.0, pending=0)
        logging.getLogger("test").warning("something happened")
        live.close()
        logging.getLogger("test").warning("after")
    finally:
        root.removeHandler(handler)
    shown = terminal.getvalue()
    assert shown.startswith(ERASE + "0:00 · 0/3 issued")
    assert f"{ERASE}something happened\n" in shown and shown.endswith("\nafter\n")


@pytest.mark.timeout(180)
def test_the_loader_on_a_terminal_draws_one_line_in_place(tmp_path, localwhisk, kafka_broker, database):
    setup = Setup(tmp_path, localwhisk, database, kafka_broker.bootstrap)
    user = f"tess{uuid.uuid4().hex[:8]}"
    setup.user(user, {"echo": ECHO_ACTION})
    setup.trace(f"{user}-echo", ["0.1\tx.jpg"] * 30)
    setup.write_config()
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "loader", "--config", str(setup.config_path)], cwd=ROOT,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    os.close(terminal)
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout, _ = process.communicate(timeout=120)
    reader.join(10)
    os.close(controller)
    assert process.returncode == 0, b"".join(chunks)[-3000:]
    shown = b"".join(chunks).decode(errors="replace")
    frames = [f.split("\r\n")[0] for f in shown.split(ERASE)[1:]]
    drawn = [f for f in frames if " issued · " in f]
    assert len(drawn) >= 4, shown[-2000:]  # ~3 s of run, redrawn every 0.5 s
    assert re.fullmatch(r"\d:\d\d/0:03 · \d+/30 issued · [\d.]+/s · \d+ completed · \d+ late · 0 throttled · "
                        r"0 errors · p99 lateness 10 s (–|[\d.e+-]+ ms)( · ETA \d:\d\d| · completing \d+ pending)?",
                        drawn[-1]), drawn[-1]
    assert "loader.pipeline: progress: " not in "".join(frames[:-1])  # no periodic log lines on a terminal
    assert "invocations: 30 issued of 30 planned" in stdout.decode()
