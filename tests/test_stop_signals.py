"""SIGINT/SIGTERM are stop requests at any moment of the loader's life, never a kill mid-write."""

from __future__ import annotations

import os
import signal

import pytest

from loader import stop_signals


@pytest.fixture
def installed():
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    stop_signals.install()
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)
    stop_signals._requests.__init__()


def test_a_stop_before_the_run_is_replayed_when_it_starts_and_one_after_it_is_ignored(installed):
    calls = []
    os.kill(os.getpid(), signal.SIGTERM)       # while the loader still checks its traces
    assert calls == []
    with stop_signals.forwarding(lambda: calls.append("stop")):
        assert calls == ["stop"]               # replayed at once: the pipeline stops as it starts
        os.kill(os.getpid(), signal.SIGINT)
        assert calls == ["stop", "stop"]       # a second request: stop waiting for completions
    os.kill(os.getpid(), signal.SIGTERM)       # while the summary is stored: not a kill
    assert calls == ["stop", "stop"]


def test_forwarding_installs_and_restores_handlers_for_a_library_caller():
    before = signal.getsignal(signal.SIGTERM)
    calls = []
    with stop_signals.forwarding(lambda: calls.append("stop")):
        os.kill(os.getpid(), signal.SIGTERM)
        assert calls == ["stop"]
    assert signal.getsignal(signal.SIGTERM) == before
    stop_signals._requests.__init__()
