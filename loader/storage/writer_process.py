"""The store writer in a process of its own: :class:`StoreWriter`'s interface, its transactions apart.

The writer's work is mostly waiting (for the server, for the commit) between short bursts of
composing SQL, and every one of those waits gives the GIL away: in the loader's process, where
the scheduler, the user-event consumer, the monitor's answers and the record-fetch answers run
too, it gets the GIL back late each time.  ``write_batch`` of 20,000 completions took 1.8 s alone
and 4.1 s with one busy Python thread beside it in the same process (6.2 s with three); in the
completion bench at 5,000 completions/s with the monitor on, the writer thread was busy 17 s of
a 21 s run for 1.1 s of its own CPU, and rows waited seconds to be committed.  Here a child
process runs an ordinary :class:`StoreWriter`; this side collects what is written and hands it
over in one pipe message ``HAND_OVER_S`` after the first of them (or as soon as ``batch_size``
items are waiting),
and a thread reads the child's reports: items committed (what :class:`~loader.storage.recorder.DurableSink`
counts on), batches, runs refused, a fatal failure.  Items cross the pipe once, pickled.

If the child dies, the items it had not committed are lost to this run: :meth:`flush` and
:meth:`write` raise :class:`StoreError` (the pipeline stops; ``--recover`` completes what was sent),
as when the writer thread fails for good.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from typing import Any

from faasload import gc_tuning
from loader.child_pipes import READY, ChildNotReady, Frames, await_ready
from loader.storage.database import DatabaseConfiguration, StoreError
from loader.storage.writer import Item, StoreWriter, WriterStats

log = logging.getLogger(__name__)

#: Longest an item written here waits before it is handed to the child (it then waits for its
#: batch there: ``database:flush_interval_s`` after the batch's first item arrived).
HAND_OVER_S = 0.002
#: How often the hand-over thread looks at the buffer when nothing wakes it (it is woken by the
#: first item written into an empty buffer, by a full batch, by a flush and by closing).
IDLE_CHECK_S = 0.2
#: The child reports what it committed as soon as a batch is committed, and at least this often
#: (a retry during an outage changes the stats without a commit).
REPORT_S = 0.2


class WriterProcess:
    """:class:`StoreWriter` for the pipeline, with its transactions in a child process."""

    def __init__(self, config: DatabaseConfiguration, *, batch_size: int = 500, flush_interval_s: float = 0.002,
                 retry_interval_s: float = 1.0):
        self.config = config
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_interval_s = retry_interval_s
        self.stats = WriterStats()
        self._context = multiprocessing.get_context("spawn")
        self._buffer: list[Item] = []
        self._buffer_lock = threading.Lock()
        self._wake = threading.Event()
        self._written = 0                 # items written here
        self._committed = threading.Condition()
        self._failure: str | None = None
        self._closing = False
        self._process: Any = None       # a spawn context's Process
        self._conn: Any = None          # its end of the pipe (a multiprocessing Connection)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> WriterProcess:
        ours, theirs = self._context.Pipe(duplex=True)
        self._process = self._context.Process(
            target=writer_main, name="faasload-store-writer", daemon=True,
            args=(self.config, self.batch_size, self.flush_interval_s, self.retry_interval_s, theirs,
                  logging.getLogger().getEffectiveLevel()))
        self._process.start()
        theirs.close()
        self._conn = ours
        try:
            await_ready(self._process, ours, "the store-writer process")
        except ChildNotReady as exc:
            raise StoreError(str(exc)) from None
        self._sender = threading.Thread(target=self._hand_over, name="store-writer-hand-over", daemon=True)
        self._sender.start()
        self._reader = threading.Thread(target=self._collect, name="store-writer-reports", daemon=True)
        self._reader.start()
        return self

    @property
    def process_id(self) -> int | None:
        return None if self._process is None else self._process.pid

    def close(self, timeout_s: float = 60.0) -> None:
        """Flush, then stop the child; raises :class:`StoreError` if rows could not be written in time."""
        self._closing = True
        self._wake.set()
        self._sender.join(10.0)
        flushed = self.flush(timeout_s) if self._failure is None else False
        try:
            assert self._conn is not None
            self._conn.send_bytes(pickle.dumps(None))
        except (OSError, ValueError):
            pass
        self._reader.join(10.0)
        assert self._process is not None
        self._process.join(10.0)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5.0)
        self._raise_failure()
        if not flushed:
            raise StoreError(f"{self.pending} items not written after {timeout_s:.0f} s "
                             f"(last error: {self.stats.last_error})")

    # ------------------------------------------------------------------ StoreWriter's interface

    def write(self, item: Item) -> None:
        self.write_many([item])

    def write_many(self, items: list[Item]) -> None:
        self._raise_failure()
        with self._buffer_lock:
            first = not self._buffer
            self._buffer.extend(items)
            self._written += len(items)
            full = len(self._buffer) >= self.batch_size
        if first or full:
            self._wake.set()

    @property
    def pending(self) -> int:
        return self._written - self.stats.items_written

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything written so far is committed; False on timeout."""
        target = self._written
        self._wake.set()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._committed:
            while self.stats.items_written < target and self._failure is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._committed.wait(1.0 if remaining is None else min(remaining, 1.0))
        self._raise_failure()
        return True

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise StoreError(f"store writer failed: {self._failure}")

    # ------------------------------------------------------------------ the two threads here

    def _hand_over(self) -> None:
        """Sleeps until an item is written, then lets others join it for up to ``HAND_OVER_S``
        (less once ``batch_size`` are waiting) and hands them over."""
        assert self._conn is not None
        while True:
            self._wake.wait(IDLE_CHECK_S)
            self._wake.clear()
            with self._buffer_lock:
                full = len(self._buffer) >= self.batch_size
            if not full and not self._closing:
                self._wake.wait(HAND_OVER_S)
                self._wake.clear()
            with self._buffer_lock:
                batch, self._buffer = self._buffer, []
            if batch:
                try:
                    self._conn.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
                except (OSError, ValueError) as exc:
                    self._fail(f"the store-writer process is gone ({type(exc).__name__}: {exc})")
                    return
            if self._closing:
                with self._buffer_lock:
                    if not self._buffer:
                        return

    def _collect(self) -> None:
        assert self._conn is not None
        frames = Frames(self._conn.fileno())
        while True:
            try:
                messages = frames.read()
            except OSError:
                messages = None
            if messages is None:
                break
            for kind, value in messages:
                if kind == "stats":
                    with self._committed:
                        self.stats = WriterStats(**value)
                        self._committed.notify_all()
                elif kind == "failed":
                    self._fail(value)
        if self.pending and self._failure is None:
            self._fail(f"the store-writer process ended with {self.pending} items not written "
                       f"(exit code {self._process.exitcode if self._process is not None else None})")

    def _fail(self, text: str) -> None:
        log.error("store writer failed: %s", text)
        with self._committed:
            self._failure = text
            self._committed.notify_all()


# ---------------------------------------------------------------------- the child process

def writer_main(config: DatabaseConfiguration, batch_size: int, flush_interval_s: float, retry_interval_s: float,
                conn, log_level: int) -> None:
    """The store-writer process: a :class:`StoreWriter` fed from the pipe, its progress reported back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stops come from the parent, through the pipe
    logging.basicConfig(level=log_level, format=f"%(asctime)s faasload-store-writer[{os.getpid()}] "
                                                "%(levelname)s %(name)s: %(message)s")
    gc_tuning.tune()
    writer = StoreWriter(config, batch_size=batch_size, flush_interval_s=flush_interval_s,
                         retry_interval_s=retry_interval_s).start()
    send_lock = threading.Lock()
    done = threading.Event()

    def send(message) -> bool:
        try:
            with send_lock:
                conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
            return True
        except (OSError, ValueError):  # the parent is gone
            return False

    def report() -> None:
        last = None
        while not done.is_set():
            writer.wait_progress(last["items_written"] if last else -1, REPORT_S)
            stats = dataclasses.asdict(writer.stats)
            if stats != last:
                last = stats
                if not send(("stats", stats)):
                    return
            try:
                writer.flush(timeout_s=0)
            except StoreError as exc:
                send(("failed", str(exc)))
                return

    reporter = threading.Thread(target=report, name="store-writer-report", daemon=True)
    conn.send(READY)
    reporter.start()
    frames = Frames(conn.fileno())
    try:
        while True:
            messages = frames.read()
            if messages is None:
                break
            for items in messages:
                if items is None:
                    break
                writer.write_many(items)
            if None in messages:
                break
    except StoreError:
        pass   # the reporter says so
    except OSError:
        pass   # the parent is gone: write what came, then end
    try:
        writer.close()
    except StoreError as exc:
        send(("failed", str(exc)))
    done.set()
    reporter.join(5.0)
    send(("stats", dataclasses.asdict(writer.stats)))
    conn.close()
