"""The pipes between the loader and its child processes (senders, record fetcher, store writer).

Each child says :data:`READY` once it can work (:func:`await_ready` waits for it); the parent
reads a child's messages in chunks (:class:`Frames`); a child's event loop sends what it has
to say in one message per loop iteration (:class:`BatchedAnswers`), so that a burst of answers
costs one pickle and one pipe write.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

#: What a child sends once it is ready.
READY = "ready"
#: How long a child may take to say so (a spawned interpreter needs ~0.3 s of imports; a loaded
#: machine much more).
START_TIMEOUT_S = 60.0
#: What one read of a child's pipe takes at most.
READ_BYTES = 1 << 16
_SHORT, _LONG = struct.Struct("!i"), struct.Struct("!Q")


class ChildNotReady(RuntimeError):
    """A child process died, took too long or sent something else before it was ready."""


def await_ready(process: BaseProcess, conn: Connection, what: str) -> None:
    """Wait until ``process`` sends :data:`READY` on ``conn``; raise :class:`ChildNotReady`
    naming ``what`` (after killing it) when it exits or :data:`START_TIMEOUT_S` passes first."""
    deadline_s = time.monotonic() + START_TIMEOUT_S
    while not conn.poll(0.1):
        if not process.is_alive() or time.monotonic() > deadline_s:
            process.kill()
            raise ChildNotReady(f"{what} did not start (exit code {process.exitcode}); its error, if any, "
                                "is in the log above")
    if conn.recv() != READY:
        raise ChildNotReady(f"{what} sent something else than its ready message")


class Frames:
    """The messages of a :class:`multiprocessing.connection.Connection`, read from its descriptor in chunks.

    The same framing as ``Connection.send_bytes`` (a signed 32-bit big-endian length, or -1 and a
    64-bit one, then the pickle); a read takes what the pipe holds, whole messages are unpickled.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = bytearray()

    def read(self) -> list | None:
        """The messages completed by one read (maybe none); None at the end of the stream."""
        data = os.read(self.fd, READ_BYTES)
        if not data:
            return None
        buffer = self.buffer
        buffer += data
        messages, position, end = [], 0, len(buffer)
        while end - position >= 4:
            (size,) = _SHORT.unpack_from(buffer, position)
            start = position + 4
            if size == -1:
                if end - start < 8:
                    break
                (size,) = _LONG.unpack_from(buffer, start)
                start += 8
            if end - start < size:
                break
            messages.append(pickle.loads(memoryview(buffer)[start:start + size]))
            position = start + size
        del buffer[:position]
        return messages


class BatchedAnswers:
    """A child's answers to its parent: those added during one event-loop iteration go out as one
    pickled list, written when the loop gets to it; ``parent_gone`` is called if the write fails."""

    def __init__(self, conn: Connection, loop: asyncio.AbstractEventLoop, parent_gone: Callable[[], None]):
        self._conn, self._loop, self._parent_gone = conn, loop, parent_gone
        self._outgoing: list[tuple] = []
        self._scheduled = False

    def add(self, answer: tuple) -> None:
        self._outgoing.append(answer)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._outgoing:
            batch, self._outgoing = self._outgoing, []
            try:
                self._conn.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
            except (OSError, ValueError):
                self._parent_gone()
