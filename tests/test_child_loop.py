"""The child processes' event loop: uvloop's, and the parent's pipe watched on it without breaking its messages."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import threading

import uvloop

from loader import child_loop

#: Larger than what a socket pair holds at once: sent and received in several system calls.
LARGE_BYTES = 4 * 1024 * 1024


def test_run_runs_the_coroutine_on_uvloop_and_returns_its_result():
    async def main():
        return type(asyncio.get_running_loop())

    assert child_loop.run(main()) is uvloop.Loop


def test_a_watched_pipe_stays_blocking_and_passes_large_messages_whole():
    """libuv makes a watched descriptor non-blocking; a multiprocessing Connection's recv and send
    of a message larger than the socket's buffer then fail half-way.  The pipe watched here is
    blocking again, and a 4 MB message each way crosses whole."""
    ours, theirs = multiprocessing.Pipe(duplex=True)
    message = os.urandom(LARGE_BYTES)
    got: list[bytes] = []
    back: list[bytes] = []

    async def main():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def readable():
            while ours.poll():
                got.append(ours.recv())
                done.set()

        probe, other = socket.socketpair()   # libuv's own effect on a descriptor it watches
        loop.add_reader(probe.fileno(), lambda: None)
        unwatched_blocking = os.get_blocking(probe.fileno())
        loop.remove_reader(probe.fileno())
        probe.close()
        other.close()
        child_loop.watch_pipe(loop, ours.fileno(), readable)
        parent = threading.Thread(target=lambda: (theirs.send(message), back.append(theirs.recv())))
        parent.start()
        await asyncio.wait_for(done.wait(), 30)
        ours.send(message[::-1])      # from the loop, as the children send their answers
        loop.remove_reader(ours.fileno())
        parent.join(30)
        return unwatched_blocking, os.get_blocking(ours.fileno())

    unwatched_blocking, watched_blocking = child_loop.run(main())
    assert not unwatched_blocking and watched_blocking
    assert got == [message]
    assert back == [message[::-1]]
