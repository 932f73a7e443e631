"""Container backends: Docker containers or cgroup-confined processes, one interface.

A container runs the runtime proxy (``localwhisk/runtime/proxy.py``) on a free localhost
port; its stdout/stderr lines are timestamped into a :class:`LogBuffer`, read per activation
up to the proxy's sentinel, as OpenWhisk's invoker reads ``docker logs``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
STREAMS = ("stdout", "stderr")


class ContainerError(RuntimeError):
    """A container could not be created or controlled."""


@dataclass(frozen=True, slots=True)
class LogLine:
    time: str     # RFC 3339 with nanoseconds, as ``docker logs --timestamps``
    stream: str   # "stdout" | "stderr"
    text: str

    def formatted(self) -> str:
        """``LogLine.toFormattedString``: time left-justified to 30, stream, trimmed text."""
        return f"{self.time:<30} {self.stream}: {self.text.strip()}"


def rfc3339_ns(epoch_ns: int) -> str:
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


class LogBuffer:
    """Lines of both streams as they arrive; ``collect`` returns one activation's lines."""

    def __init__(self):
        self._cond = threading.Condition()
        self._pending: dict[str, list[LogLine]] = {s: [] for s in STREAMS}
        self._eof: dict[str, bool] = {s: False for s in STREAMS}

    def feed(self, stream: str, text: str, time_text: str | None = None) -> None:
        line = LogLine(time_text or rfc3339_ns(time.time_ns()), stream, text)
        with self._cond:
            self._pending[stream].append(line)
            if text == SENTINEL:
                self._cond.notify_all()

    def close(self, stream: str) -> None:
        with self._cond:
            self._eof[stream] = True
            self._cond.notify_all()

    def _ready(self, stream: str) -> bool:
        return self._eof[stream] or any(line.text == SENTINEL for line in self._pending[stream])

    def collect(self, timeout_s: float) -> tuple[list[LogLine], bool]:
        """Lines up to the sentinel of each stream, time-ordered; and whether both were found."""
        with self._cond:
            complete = self._cond.wait_for(lambda: all(self._ready(s) for s in STREAMS), timeout_s)
            lines: list[LogLine] = []
            for stream in STREAMS:
                pending = self._pending[stream]
                cut = next((i for i, line in enumerate(pending) if line.text == SENTINEL), None)
                if cut is None:
                    lines += pending
                    self._pending[stream] = []
                else:
                    lines += pending[:cut]
                    self._pending[stream] = pending[cut + 1:]
        lines.sort(key=lambda line: line.time)
        return lines, complete


def pump_lines(chunks: Iterable[bytes], on_line) -> None:
    """Split a byte stream into lines (without newline) and call ``on_line`` for each."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *lines, rest = rest.split(b"\n")
        for raw in lines:
            on_line(raw.decode("utf-8", errors="replace"))
    if rest:
        on_line(rest.decode("utf-8", errors="replace"))


class Container(Protocol):
    """A running action container."""

    id: str            # Docker's full id, or localwhisk's id of a process container
    name: str          # wsk<instance>_<n>_<namespace>_<action>
    port: int          # the runtime proxy's localhost port (process backend)
    socket_path: str | None  # the runtime proxy's UNIX socket (Docker backend: no network needed)
    cgroup: str | None  # the cgroup path for monitor notifications, when known
    logs: LogBuffer

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def destroy(self) -> None: ...
    def oom_kills(self) -> int | None: ...
    def alive(self) -> bool: ...


class Backend(Protocol):
    name: str
    supports_pause: bool
    warning: str | None  # said once at start-up (e.g. no memory limits)

    def create(self, name: str, memory_mb: int, env: dict[str, str], network: bool = False) -> Container:
        """A new container; ``network``: the action asked for a network (else it gets none where
        the backend can isolate it)."""
        ...

    def close(self) -> None: ...


def wait_for_port_file(path: Path, deadline_s: float, alive) -> int:
    """The port the proxy wrote to ``path``; raises :class:`ContainerError` on exit or timeout."""
    def port() -> int | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        return int(text) if text else None
    return _wait_ready(port, deadline_s, alive)


def wait_for_socket(path: Path, deadline_s: float, alive) -> None:
    """Until the proxy accepts connections on the UNIX socket ``path``; raises like :func:`wait_for_port_file`."""
    def accepts() -> bool | None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                return None
        return True
    _wait_ready(accepts, deadline_s, alive)


def _wait_ready(probe: Callable[[], T | None], deadline_s: float, alive) -> T:
    """``probe()``'s first value other than None; ``alive()`` (maybe a Docker API call) is asked
    at most every 50 ms."""
    next_alive_check_s = time.monotonic() + 0.05
    while True:
        value = probe()
        if value is not None:
            return value
        now_s = time.monotonic()
        if now_s >= next_alive_check_s:
            next_alive_check_s = now_s + 0.05
            if not alive():
                raise ContainerError("the runtime proxy exited before listening")
        if now_s > deadline_s:
            raise ContainerError("the runtime proxy did not listen in time")
        time.sleep(0.002)
