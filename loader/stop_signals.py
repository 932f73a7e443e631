"""SIGINT and SIGTERM as stop requests, from the loader's first instruction to its last.

The handlers only count (nothing else is safe in a signal handler) and, while a pipeline
runs, forward each request to it.  A request that arrives before the pipeline started (the
loader is still checking traces or opening the database) is replayed to the pipeline when
it starts, so it stops at once and records what it must; one that arrives after the
pipeline ended is ignored while the summary and checkpoint are stored.  Either
way a stop never kills the loader in the middle of writing.  ``python -m loader`` installs
the handlers first thing (:func:`install`); :func:`forwarding` installs them for the
duration of a run when no one did (a library caller in the main thread).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Requests:
    def __init__(self) -> None:
        self.received = 0
        self.forwarded = 0
        self.target: Callable[[], None] | None = None
        self.installed = False

    def handle(self, number: int, frame: FrameType | None) -> None:
        self.received += 1   # no logging here: a handler may interrupt a thread holding its lock
        self.forward()

    def forward(self) -> None:
        target = self.target
        while target is not None and self.forwarded < self.received:
            self.forwarded += 1
            target()


_requests = _Requests()


def install() -> None:
    """Handle SIGINT and SIGTERM for the rest of the process (call from the main thread)."""
    for number in _SIGNALS:
        signal.signal(number, _requests.handle)
    _requests.installed = True


@contextlib.contextmanager
def forwarding(request_stop: Callable[[], None]) -> Iterator[None]:
    """Forward stop requests to ``request_stop`` (those already received first) while inside."""
    installed_here: dict[int, object] = {}
    if not _requests.installed and threading.current_thread() is threading.main_thread():
        installed_here = {number: signal.signal(number, _requests.handle) for number in _SIGNALS}
    _requests.target = request_stop
    try:
        _requests.forward()   # the requests received before the run started
        yield
    finally:
        _requests.target = None
        _requests.forwarded = _requests.received   # after the run: nothing left to stop
        for number, handler in installed_here.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
