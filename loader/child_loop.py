"""The event loop of the loader's child processes (the senders, the record fetches): uvloop's.

uvloop runs asyncio's interface on libuv, its loop in C.  The sender processes and the
record-fetch process do nothing but network I/O on their loop, so its cost is theirs: at
10,000 invocations/s the loader used 77.0–78.2% of a core with uvloop against 83.1–84.4%
with asyncio's own loop (three alternated pairs, ``bench/injection_precision.py``,
docs/performance.md), for the same lateness.

libuv's poll handle, behind ``loop.add_reader``, sets the descriptor it watches non-blocking
(``uv_poll_init``).  The pipe to the parent is a :class:`multiprocessing.connection.Connection`:
its ``recv`` reads a whole message and its ``send`` writes one, each in as many system calls as
it takes, which a non-blocking descriptor breaks with ``BlockingIOError`` as soon as a message
is larger than what the socket holds at once.  :func:`watch_pipe` watches it and sets it back
to blocking: the loop only reads when something has arrived, and the parent writes whole
messages.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end on a new uvloop loop (as :func:`asyncio.run` does on asyncio's); its result."""
    return uvloop.run(main)


def watch_pipe(loop: asyncio.AbstractEventLoop, fd: int, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the parent's pipe ``fd`` is readable, the descriptor kept blocking."""
    loop.add_reader(fd, callback)
    os.set_blocking(fd, True)
