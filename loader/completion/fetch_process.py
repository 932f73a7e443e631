"""Activation-record fetches in a process of their own, on an event loop (the tracker's fetcher).

The fetches are I/O: a write and a read per record on a keep-alive connection.  In the
loader's process each of those system calls gives the GIL away and waits to get it back
from whichever thread holds it (the store writer composing SQL, the user-event consumer, the
monitor's answers being parsed, the scheduler): with eight blocking fetch threads the path
fetched ~2,700 records/s, and ~2,000/s with the same fetches on an event loop in a thread
of the loader, while the process used under half a core (bench/completion_pipeline.py,
monitor on, 5,000 events/s; docs/performance.md).  Alone, that loop fetches 10,000/s at
36 µs of CPU per fetch, p99 6 ms.  So the loop (uvloop's, :mod:`loader.child_loop`) runs
here, in a child process: the tracker hands each tick's due fetches over in one pipe message,
the child sends them at once (:class:`~loader.completion.fetch_loop.RecordFetches`, up to
``fetches_in_flight``), parses the records and sends the outcomes back in batches, each
record cut to what the loader reads of it (:func:`~loader.storage.activation_fields.slim_record`);
a thread of the loader reads them (one read often brings several batches) and hands each
batch's outcomes to ``done`` in one call (one lock of the tracker per batch, not per record).

If the child dies, every fetch it held ends with an ``error`` outcome (the tracker retries
it with its backoff, on a new child).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING

from faasload import gc_tuning
from loader import child_loop
from loader.child_pipes import READY, BatchedAnswers, Frames, await_ready
from loader.completion.fetch_loop import RecordFetches
from loader.platform.client import ClientSettings, FetchOutcome, FetchStatus, network_outcome
from loader.sending.event_loop import raise_file_limit
from loader.storage.activation_fields import slim_record

if TYPE_CHECKING:  # the tracker builds a FetchProcess
    from loader.completion.tracker import Done, Pending

log = logging.getLogger(__name__)

#: How long :meth:`FetchProcess.close` waits beyond the client's timeout for the fetches in flight.
CLOSE_GRACE_S = 5.0
GONE_REASON = "the record-fetch process is gone ({why})"

class FetchProcess:
    """The tracker's fetcher: a child process fetching records, a thread here taking its answers."""

    def __init__(self, settings: ClientSettings, max_in_flight: int):
        self.settings = settings
        self.max_in_flight = max_in_flight
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()       # the waiting fetches
        self._send_lock = threading.Lock()  # the pipe's writes (never held with the other: no deadlock
                                            # when both sides' pipes are full)
        self._waiting: dict[int, tuple[Pending, Done]] = {}
        self._tickets = itertools.count()
        self._closing = False
        self.stats: dict = {}               # what the child reported when it ended
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        ours, theirs = self._context.Pipe(duplex=True)
        self._process = self._context.Process(
            target=fetch_main, name="faasload-fetcher", daemon=True,
            args=(self.settings, self.max_in_flight, theirs, logging.getLogger().getEffectiveLevel()))
        self._process.start()
        theirs.close()
        self._conn = ours
        await_ready(self._process, ours, "the record-fetch process")
        self._reader = threading.Thread(target=self._collect, args=(ours,), name="record-fetch-answers", daemon=True)
        self._reader.start()

    @property
    def process_id(self) -> int | None:
        """The child's pid (for CPU accounting)."""
        return self._process.pid

    # ------------------------------------------------------------------ the tracker's side

    def fetch(self, pendings: list[Pending], done: Done) -> None:
        """Hand ``pendings`` over in one message; ``done([(pending, outcome), ...])`` runs on this object's thread.
        A dead child is replaced first (once per call)."""
        why = "stopped"
        with self._send_lock:
            for _ in range(2):
                if self._closing:
                    break
                if not self._process.is_alive():
                    self.restarts += 1
                    log.error("the record-fetch process died (exit code %s); starting another",
                              self._process.exitcode)
                    self._reader.join(CLOSE_GRACE_S)   # it reads the pipe's end and fails what the child held
                    try:
                        self._start()
                    except RuntimeError as exc:
                        why = str(exc)
                        break
                batch = []
                with self._lock:
                    for pending in pendings:
                        ticket = next(self._tickets)
                        self._waiting[ticket] = (pending, done)
                        batch.append((ticket, pending.user, pending.activation_id))
                try:
                    self._conn.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
                    return
                except (OSError, ValueError) as exc:   # the child is dying: replace it and send again
                    why = f"{type(exc).__name__}: {exc}"
                    with self._lock:
                        for ticket, _, _ in batch:
                            self._waiting.pop(ticket, None)
                    self._process.join(CLOSE_GRACE_S)
        gone = network_outcome(GONE_REASON.format(why=why))
        done([(pending, gone) for pending in pendings])

    def close(self) -> None:
        """Let the child answer what it holds (each within the client's timeout), then end it."""
        with self._send_lock:
            if self._closing:
                return
            self._closing = True
            try:
                self._conn.send_bytes(pickle.dumps(None))
            except (OSError, ValueError):
                pass
        self._reader.join(self.settings.timeout_s + CLOSE_GRACE_S)
        self._process.join(CLOSE_GRACE_S)
        if self._process.is_alive():
            log.error("the record-fetch process did not stop; terminating it")
            self._process.terminate()
            self._process.join(CLOSE_GRACE_S)
        self._fail_waiting("stopped before it answered")
        self._conn.close()

    # ------------------------------------------------------------------ the answers (this object's thread)

    def _collect(self, conn) -> None:
        frames = Frames(conn.fileno())
        while True:
            try:
                messages = frames.read()
            except OSError:
                messages = None
            except Exception:  # a message that does not unpickle (a bug): replace the child  # noqa: BLE001
                log.exception("unreadable message from the record-fetch process; ending it (another starts)")
                self._process.kill()
                messages = None
            if messages is None:
                break
            for message in messages:
                if isinstance(message, tuple):   # ("stats", {...}): the child's last message
                    self.stats = message[1]
                    continue
                self._deliver(message)
        if not self._closing:
            self._fail_waiting("it ended without answering")

    def _deliver(self, message: list[tuple]) -> None:
        """One message of answers, handed to their ``done`` in one call per ``done``."""
        by_done: dict[Done, list[tuple[Pending, FetchOutcome]]] = {}
        with self._lock:
            entries = [(self._waiting.pop(ticket, None), status, record, http_status, reason)
                       for ticket, status, record, http_status, reason in message]
        for entry, status, record, http_status, reason in entries:
            if entry is not None:
                pending, done = entry
                by_done.setdefault(done, []).append(
                    (pending, FetchOutcome(FetchStatus(status), record, http_status, reason)))
        self._hand(by_done)

    @staticmethod
    def _hand(by_done: dict[Done, list[tuple[Pending, FetchOutcome]]]) -> None:
        for done, answers in by_done.items():
            try:
                done(answers)
            except Exception:  # never let a bug stop the answers  # noqa: BLE001
                log.exception("handling the records of %d activations failed", len(answers))

    def _fail_waiting(self, why: str) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        gone = network_outcome(GONE_REASON.format(why=why))
        by_done: dict[Done, list[tuple[Pending, FetchOutcome]]] = {}
        for pending, done in waiting.values():
            by_done.setdefault(done, []).append((pending, gone))
        self._hand(by_done)


# ---------------------------------------------------------------------- the child process

def fetch_main(settings: ClientSettings, max_in_flight: int, conn, log_level: int) -> None:
    """The record-fetch process: one event loop, its connections, one pipe to the loader."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stops come from the parent, through the pipe
    logging.basicConfig(level=log_level, format=f"%(asctime)s faasload-fetcher[{os.getpid()}] "
                                                "%(levelname)s %(name)s: %(message)s")
    raise_file_limit(max_in_flight + 64)
    gc_tuning.tune()
    child_loop.run(_serve(settings, max_in_flight, conn))


async def _serve(settings: ClientSettings, max_in_flight: int, conn) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    answers = BatchedAnswers(conn, loop, parent_gone=done.set)
    ending = False

    def answer(ticket: int, outcome: FetchOutcome) -> None:
        record = None if outcome.record is None else slim_record(outcome.record)
        answers.add((ticket, outcome.status.value, record, outcome.http_status, outcome.reason))
        if ending and not fetches.busy:
            loop.call_soon(done.set)

    fetches = RecordFetches(settings.client(), max_in_flight, answer)
    frames = Frames(conn.fileno())

    def readable() -> None:
        nonlocal ending
        try:
            messages = frames.read()
        except OSError:
            messages = None
        if messages is None:   # the parent is gone
            loop.remove_reader(conn.fileno())
            done.set()
            return
        for message in messages:
            if message is None:
                ending = True
                loop.remove_reader(conn.fileno())
                break
            for ticket, user, activation_id in message:
                fetches.submit(ticket, user, activation_id)
        if ending and not fetches.busy:
            done.set()

    conn.send(READY)
    child_loop.watch_pipe(loop, conn.fileno(), readable)
    await done.wait()
    answers.flush()
    fetches.close()
    try:
        conn.send_bytes(pickle.dumps(("stats", asdict(fetches.stats)), pickle.HIGHEST_PROTOCOL))
    except (OSError, ValueError):
        pass
    conn.close()
