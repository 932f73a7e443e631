"""The batched writer of runs, their parameters and their resources.

All run data goes through :class:`StoreWriter`: one thread, batches in transactions,
idempotent upserts on natural keys, so a batch retried after a lost connection
never duplicates a row.  :func:`write_batch` is the synchronous core.

A batch is one statement and a commit (two round trips): the runs upserted, then the
parameters and samples inserted, each taking its run's id from the upsert (``RETURNING``) or,
when its run was written by an earlier batch, from a lookup in the unique index, with every
value composed here (:func:`_values`).  Taking the ids from the upsert, with half of each page
of ``runs`` left free for the updates (migration 8), cut PostgreSQL's CPU per completion from
78.5 to 62.0 µs (medians of three rounds, ``python bench/store_writes.py``).  ``execute_values`` composed every value
through ``mogrify``: 47-54 µs of the writer's CPU per completion (a run update and its
samples), and with the ids fetched back for the children, its transactions took 8,300
completions/s at best alone against the embedded PostgreSQL; one composed statement costs
29-36 µs and takes 10,300-13,300/s (``write_batch`` of 20,000 completions in batches of
500-2,000 items, same machine).  COPY into temporary tables cost the same CPU in five round
trips (docs/performance.md).

A run's samples are one row of ``run_samples`` (migration 9), each measure an array literal
composed here (:func:`sample_arrays`), in time order with one sample per date: a run's samples
written twice (a retried batch, two answers in one batch) keep the first row written.

A value the database refuses (a NUL byte in a text, a number out of its column's range)
costs only its own run: the batch is written again run by run, and the run whose data
was refused is marked ``store_error`` with the error (:func:`write_rejected`).
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from loader.storage import schema
from loader.storage.database import DatabaseConfiguration, DatabaseError, StoreError
from loader.storage.rows import RUN_COLUMNS, ResourceSamples, RunKey, RunParameters, RunResources, RunStatus, RunUpdate

log = logging.getLogger(__name__)

Item = RunUpdate | RunParameters | RunResources
_RETRYABLE = (psycopg2.OperationalError, psycopg2.InterfaceError, DatabaseError)
#: A value of one row refused: by the server (DataError) or by psycopg2 before sending (ValueError: NUL).
_REFUSED = (psycopg2.DataError, ValueError)
#: What :func:`write_rejected` keeps of a refused run's update: the fields the loader computed itself.
_KEPT_WHEN_REFUSED = ("input_object", "sent_offset_us", "lateness_us", "invoke_http_status", "invoke_attempts",
                      "activation_id")


# --------------------------------------------------------------------------- batch writing

_TERMINAL_SQL = ", ".join(f"'{s}'" for s in schema.TERMINAL_STATUSES)


def _run_upsert_sql() -> str:
    key = {"experiment_id", "trace_name", "seq"}
    sets = []
    for column in RUN_COLUMNS:
        if column in key:
            continue
        if column == "status":
            sets.append(f"status = CASE WHEN runs.status IN ({_TERMINAL_SQL}) THEN runs.status ELSE EXCLUDED.status END")
        else:
            sets.append(f"{column} = COALESCE(EXCLUDED.{column}, runs.{column})")
    return (f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES %s "
            f"ON CONFLICT (experiment_id, trace_name, seq) DO UPDATE SET {', '.join(sets)}")


_RUN_UPSERT = _run_upsert_sql()


def _merge(old: RunUpdate, new: RunUpdate) -> RunUpdate:
    """Two updates of one run in one batch, merged as the database would apply them in order."""
    values = {}
    for column in RUN_COLUMNS[3:]:
        new_value, old_value = getattr(new, column), getattr(old, column)
        if column == "status":
            values[column] = old_value if old_value.terminal else new_value
        else:
            values[column] = new_value if new_value is not None else old_value
    return RunUpdate(key=old.key, **values)


def _run_row(update: RunUpdate) -> tuple:
    key = update.key
    row = [key.experiment_id, key.trace_name, key.seq]
    for column in RUN_COLUMNS[3:]:
        value = getattr(update, column)
        row.append(value.value if isinstance(value, RunStatus) else value)
    return tuple(row)


def write_batch(conn, items: list[Item]) -> None:
    """Write a batch in one transaction: runs first, then parameters and resources.

    Idempotent: writing the same batch again changes nothing.  Parameters and
    resources must refer to runs already stored or in the same batch (else
    :class:`StoreError`).  The whole batch is one statement (its values composed here,
    :func:`_literal`) and a commit: two round trips.
    """
    runs: dict[RunKey, RunUpdate] = {}
    params: list[RunParameters] = []
    resources: dict[RunKey, RunResources] = {}   # a run's first samples in the batch
    for item in items:
        if isinstance(item, RunUpdate):
            runs[item.key] = _merge(runs[item.key], item) if item.key in runs else item
        elif isinstance(item, RunParameters):
            params.append(item)
        elif isinstance(item, RunResources):
            if item.samples:
                resources.setdefault(item.key, item)
        else:
            raise TypeError(f"cannot store {type(item).__name__}")
    # children of a run upserted in this batch take its id from the upsert; the others look it up
    param_rows, orphan_param_rows = _split_children(
        runs, params, lambda p: [(p.key.experiment_id, p.key.trace_name, p.key.seq, name, value)
                                 for name, value in p.values])
    sample_rows, orphan_sample_rows = _split_children(
        runs, list(resources.values()),
        lambda r: [(r.key.experiment_id, r.key.trace_name, r.key.seq, sample_arrays(r.samples))])
    statements = []
    if runs:
        upsert = _RUN_UPSERT.replace("%s", _values(_run_row(u) for u in runs.values()))
        children = ([_PARAMS_JOINED.format(values=_values(param_rows))] if param_rows else []) + (
            [_SAMPLES_JOINED.format(values=_values(sample_rows))] if sample_rows else [])
        if children:
            named = [f"{_UPSERTED} AS ({upsert} RETURNING run_id, experiment_id, trace_name, seq)"]
            named += [f"c{n} AS ({child})" for n, child in enumerate(children[:-1])]
            statements.append(f"WITH {', '.join(named)} {children[-1]}")
        else:
            statements.append(upsert)
    if orphan_param_rows:
        statements.append(_PARAMS_LOOKED_UP.format(values=_values(orphan_param_rows)))
    if orphan_sample_rows:
        statements.append(_SAMPLES_LOOKED_UP.format(values=_values(orphan_sample_rows)))
    orphans = {row[:3] for row in orphan_param_rows} | {row[:3] for row in orphan_sample_rows}
    if orphans:
        statements.append(_MISSING.format(values=_values(orphans)))
    if not statements:
        return
    if conn not in _SET_UP:  # the quoting of _literal needs standard strings (PostgreSQL's default)
        with conn, conn.cursor() as cur:
            cur.execute("SET standard_conforming_strings = on")
        _SET_UP.add(conn)
    with conn, conn.cursor() as cur:
        cur.execute("; ".join(statements))
        missing = cur.fetchall() if orphans else []
        if missing:
            raise StoreError("parameters or resources for runs never written: "
                             f"{[RunKey(e, t, n) for e, t, n in missing]}")


def _split_children(runs: dict[RunKey, RunUpdate], children: list, rows_of) -> tuple[list[tuple], list[tuple]]:
    """The rows of ``children`` whose run is upserted in the batch, and the rows of the others."""
    joined: list[tuple] = []
    orphans: list[tuple] = []
    for child in children:
        (joined if child.key in runs else orphans).extend(rows_of(child))
    return joined, orphans


# --------------------------------------------------------------------------- one statement per batch

#: The name of the batch's run upsert, as a WITH query returning each run's id and key.
_UPSERTED = "upserted"
#: A child's run: from the batch's upsert (joined on the key it returns: no index lookup), or, for
#: a child whose run was written in an earlier batch, looked up by its key in the unique index (a
#: correlated subquery: a join let the planner scan all of ``runs`` for each batch).
_JOINED = f"JOIN {_UPSERTED} u USING (experiment_id, trace_name, seq)"
_LOOKED_UP_RUN_ID = ("(SELECT r.run_id FROM runs r WHERE r.experiment_id = s.experiment_id "
                     "AND r.trace_name = s.trace_name AND r.seq = s.seq)")
_PARAMS_VALUES = "(VALUES {values}) s(experiment_id, trace_name, seq, name, value)"
_SAMPLES_VALUES = ("(VALUES {values}) s(experiment_id, trace_name, seq, sampled_at_us, memory_bytes, "
                   "rss_mapped_bytes, cpu_ns)")
_SAMPLE_COLUMNS = "s.sampled_at_us::bigint[], s.memory_bytes::bigint[], s.rss_mapped_bytes::bigint[], s.cpu_ns::bigint[]"
_PARAMS_JOINED = (f"INSERT INTO parameters (run_id, name, value) SELECT u.run_id, s.name, s.value "
                  f"FROM {_PARAMS_VALUES} {_JOINED} ON CONFLICT DO NOTHING")
_SAMPLES_JOINED = (f"INSERT INTO run_samples (run_id, sampled_at_us, memory_bytes, rss_mapped_bytes, cpu_ns) "
                   f"SELECT u.run_id, {_SAMPLE_COLUMNS} FROM {_SAMPLES_VALUES} {_JOINED} ON CONFLICT DO NOTHING")
_PARAMS_LOOKED_UP = (
    f"INSERT INTO parameters (run_id, name, value) SELECT * FROM (SELECT {_LOOKED_UP_RUN_ID} AS run_id, s.name, "
    f"s.value FROM {_PARAMS_VALUES}) p WHERE run_id IS NOT NULL ON CONFLICT DO NOTHING")
_SAMPLES_LOOKED_UP = (
    f"INSERT INTO run_samples (run_id, sampled_at_us, memory_bytes, rss_mapped_bytes, cpu_ns) SELECT * FROM "
    f"(SELECT {_LOOKED_UP_RUN_ID} AS run_id, {_SAMPLE_COLUMNS} FROM {_SAMPLES_VALUES}) r "
    "WHERE run_id IS NOT NULL ON CONFLICT DO NOTHING")
#: The children's runs that do not exist (the statement's result).
_MISSING = (f"SELECT s.experiment_id, s.trace_name, s.seq FROM (VALUES {{values}}) s(experiment_id, trace_name, seq) "
            f"WHERE {_LOOKED_UP_RUN_ID} IS NULL LIMIT 5")
#: The connections set up for :func:`_literal`'s quoting.
_SET_UP: weakref.WeakSet = weakref.WeakSet()
_SPECIAL_FLOATS = {"inf": "'Infinity'::float8", "-inf": "'-Infinity'::float8", "nan": "'NaN'::float8"}


class _Sql(str):
    """Text composed here as SQL (the samples' arrays), written as it is."""


def sample_arrays(samples: ResourceSamples) -> _Sql:
    """A run's samples as four array literals (dates, memory, mapped RSS, CPU), the four values of
    one VALUES row (cast to ``bigint[]`` by the statement), in time order, one sample per date (the
    first given).  A literal, not an ``ARRAY[...]`` constructor: PostgreSQL parses each element of
    a constructor as an expression of its own, which cost it more than one row per sample had
    (58-60 against 42-48 µs per completion of 3 samples, ``bench/store_writes.py``); with the
    literal, 28-32 µs.  The samples' columns are the arrays as they are (in order, as the monitor
    answers them)."""
    dates = samples.sampled_at_us
    columns: tuple[Sequence[int | None], ...] = (samples.memory_bytes, samples.rss_mapped_bytes, samples.cpu_ns)
    if len(set(dates)) != len(dates) or list(dates) != sorted(dates):
        first: dict[int, int] = {}
        for index, date in enumerate(dates):
            first.setdefault(date, index)
        order = [first[date] for date in sorted(first)]
        dates = tuple([dates[i] for i in order])
        columns = tuple(tuple([column[i] for i in order]) for column in columns)
    return _Sql(",".join([_array(dates), *[_array(column) for column in columns]]))


def _array(values: Sequence[int | None]) -> str:
    """An array literal of numbers.  int(): the text is SQL, so nothing but a number may reach it (a
    string raises ValueError, and the run alone is refused, as for any value the database refuses)."""
    return "'{" + ",".join(["NULL" if v is None else str(int(v)) for v in values]) + "}'"


def _literal(value) -> str:
    """A value that is neither None nor a str nor an int, as an SQL literal."""
    if type(value) is _Sql:
        return value
    if value is True:
        return "TRUE"
    if value is False:
        return "FALSE"
    if isinstance(value, enum.Enum):
        return _literal(value.value) if not isinstance(value.value, str) else _text(value.value)
    if isinstance(value, float):
        text = repr(value)
        return _SPECIAL_FLOATS.get(text, text)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _text(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a column")


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("A string literal cannot contain NUL (0x00) characters.")
    return "'" + value.replace("'", "''") + "'"


def _values(rows) -> str:
    """Rows as a VALUES list.  The common cases inline: a function call per value cost as much as
    the rest of the batch."""
    return ",".join(["(" + ",".join(["NULL" if v is None else str(v) if type(v) is int
                                     else _text(v) if type(v) is str else _literal(v) for v in row]) + ")"
                     for row in rows])


def write_rejected(conn, key: RunKey, update: RunUpdate | None, reason: str) -> None:
    """Mark run ``key`` ``store_error`` with ``reason`` (created from ``update`` if it has no row yet).

    Of ``update``, only the fields the loader computed (sending time, lateness, activation id...)
    are kept, and only text without a NUL byte; a later update of the run still adds its fields,
    never its status.
    """
    status = RunStatus.STORE_ERROR.value
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE runs SET status = %s, status_reason = %s "
                    "WHERE experiment_id = %s AND trace_name = %s AND seq = %s",
                    (status, reason, key.experiment_id, key.trace_name, key.seq))
        if cur.rowcount or update is None:
            return
        kept = {name: getattr(update, name) for name in _KEPT_WHEN_REFUSED}
        kept = {name: value for name, value in kept.items() if not (isinstance(value, str) and "\x00" in value)}
        row = RunUpdate(key, update.user_name, update.action_name, update.planned_offset_us, RunStatus.STORE_ERROR,
                        status_reason=reason, **kept)
        psycopg2.extras.execute_values(cur, _RUN_UPSERT, [_run_row(row)])


# --------------------------------------------------------------------------- the writer thread

@dataclass
class WriterStats:
    items_written: int = 0
    batches_written: int = 0
    batches_retried: int = 0
    #: Runs whose data the database refused (marked ``store_error``): trace, seq, reason.
    rejected: list[dict] = field(default_factory=list)
    last_error: str | None = None
    outage_s: float = 0.0
    #: Time spent writing batches (composing, the server's work, the commits), outages included.
    busy_s: float = 0.0
    #: The writer thread's own CPU in that time (the rest: the server, the network, waiting for the GIL).
    cpu_s: float = 0.0
    extra: dict = field(default_factory=dict)


class ItemWriter(Protocol):
    """What writes the items: :class:`StoreWriter`, or the pipeline's
    :class:`~loader.storage.writer_process.WriterProcess`."""

    stats: WriterStats
    batch_size: int
    flush_interval_s: float

    def write(self, item: Item) -> None: ...
    def write_many(self, items: list[Item]) -> None: ...
    def flush(self, timeout_s: float | None = None) -> bool: ...
    @property
    def pending(self) -> int: ...


class StoreWriter:
    """One thread that writes items in batched transactions, retrying through outages.

    ``write()`` never blocks on the database.  A connection failure keeps the batch
    and retries it every ``retry_interval_s`` (idempotent, so nothing doubles); any
    other failure is fatal and re-raised by the next ``write``/``flush``/``close``.
    """

    def __init__(self, config: DatabaseConfiguration, *, batch_size: int = 500,
                 flush_interval_s: float = 0.002, retry_interval_s: float = 1.0):
        self.config = config
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_interval_s = retry_interval_s
        self.stats = WriterStats()
        #: Items with the monotonic time they were written, in order.  A deque and a condition the
        #: writer waits on only when it has nothing (or too little) to write: ``queue.Queue``'s lock
        #: and notification per put and per get cost ~10 µs of GIL time per item at 5,000 rows/s.
        self._items: collections.deque[tuple[float, Item]] = collections.deque()
        self._arrived = threading.Condition()
        self._wanted = 0           # items the writer waits for (0: not waiting)
        self._stop = False
        self._pending = 0
        self._pending_lock = threading.Condition()
        self._failure: BaseException | None = None
        self._closing = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._conn: psycopg2.extensions.connection | None = None

    def start(self) -> StoreWriter:
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()
        return self

    def write(self, item: Item) -> None:
        self.write_many([item])

    def write_many(self, items: list[Item]) -> None:
        """:meth:`write` for several items (one count update and one time for all)."""
        self._raise_failure()
        with self._pending_lock:
            self._pending += len(items)
        written_s = time.monotonic()
        self._items.extend([(written_s, item) for item in items])
        if self._wanted and len(self._items) >= self._wanted:
            with self._arrived:
                self._arrived.notify()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything written so far is committed; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._pending_lock:
            while self._pending and self._failure is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._pending_lock.wait(remaining if remaining is not None else 1.0)
        self._raise_failure()
        return True

    @property
    def pending(self) -> int:
        return self._pending

    def wait_progress(self, items_written: int, timeout_s: float) -> None:
        """Return once more than ``items_written`` items are committed, the writer failed, or
        ``timeout_s`` passed (a retry during an outage changes the stats without notice)."""
        deadline = time.monotonic() + timeout_s
        with self._pending_lock:
            while self.stats.items_written == items_written and self._failure is None and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._pending_lock.wait(remaining)

    def close(self, timeout_s: float = 60.0) -> None:
        """Flush (without waiting for a partial batch's interval), then stop; raises :class:`StoreError`
        if rows could not be written in time."""
        self._closing.set()
        with self._arrived:  # ends the batch being collected, then the thread once nothing is left
            self._stop = True
            self._arrived.notify()
        flushed = self.flush(timeout_s)
        if self._thread is not None:
            self._thread.join(5.0)
        with self._pending_lock:
            self._closed = True
            self._pending_lock.notify_all()
        if self._conn is not None:
            self._conn.close()
        self._raise_failure()
        if not flushed:
            raise StoreError(f"{self._pending} items not written after {timeout_s:.0f} s "
                             f"(last error: {self.stats.last_error})")

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise StoreError(f"store writer failed: {self._failure}") from self._failure

    def _next_batch(self) -> list[Item] | None:
        """The next batch: up to ``batch_size`` items, collected until ``flush_interval_s`` after its
        first item was *written* (so items queued during a slow transaction wait for no more);
        None once stopped with nothing left."""
        items = self._items
        if not items:
            with self._arrived:
                self._wanted = 1
                if not items and not self._stop:
                    self._arrived.wait(0.2)
                self._wanted = 0
            if not items:
                return None if self._stop else []
        deadline = items[0][0] + self.flush_interval_s
        while len(items) < self.batch_size and not self._stop:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with self._arrived:
                self._wanted = self.batch_size
                if len(items) < self.batch_size and not self._stop:
                    self._arrived.wait(remaining)
                self._wanted = 0
        return [items.popleft()[1] for _ in range(min(self.batch_size, len(items)))]

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            try:
                began_s, began_cpu_s = time.monotonic(), time.thread_time()
                self._write_with_retry(batch)
                self.stats.busy_s += time.monotonic() - began_s
                self.stats.cpu_s += time.thread_time() - began_cpu_s
            except BaseException as exc:  # fatal: surface to the caller, never swallow
                log.error("store writer stopped: %s", exc, exc_info=True)
                self._failure = exc
                with self._pending_lock:
                    self._pending_lock.notify_all()
                return
            with self._pending_lock:
                self._pending -= len(batch)
                self.stats.items_written += len(batch)
                self.stats.batches_written += 1
                self._pending_lock.notify_all()

    def _write_with_retry(self, batch: list[Item]) -> None:
        outage_start = None
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self.config.connect()
                try:
                    write_batch(self._conn, batch)
                except _REFUSED as exc:
                    self._write_run_by_run(batch, exc)
                if outage_start is not None:
                    self.stats.outage_s += time.monotonic() - outage_start
                    log.warning("database reachable again; batch of %d written after %.1f s",
                                len(batch), time.monotonic() - outage_start)
                return
            except _RETRYABLE as exc:
                self.stats.batches_retried += 1
                self.stats.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if outage_start is None:
                    outage_start = time.monotonic()
                    log.warning("database write failed (%s); keeping %d items and retrying every %.1f s",
                                self.stats.last_error, len(batch), self.retry_interval_s)
                if self._conn is not None:
                    try:
                        self._conn.close()
                    except psycopg2.Error:
                        pass
                    self._conn = None
                time.sleep(self.retry_interval_s)

    def _write_run_by_run(self, batch: list[Item], refused: Exception) -> None:
        """The batch again, one transaction per run, so that a refused value costs only its own run."""
        log.warning("the database refused a value in a batch of %d items (%s); writing it run by run",
                    len(batch), _error_text(refused))
        runs: dict[RunKey, list[Item]] = {}
        for item in batch:
            runs.setdefault(item.key, []).append(item)
        for key, items in runs.items():
            try:
                write_batch(self._conn, items)
            except _REFUSED:
                self._write_parts(key, items)

    def _write_parts(self, key: RunKey, items: list[Item]) -> None:
        """A run's row, then each of its parameters and samples items; mark the run with what was refused."""
        update = None
        for item in items:
            if isinstance(item, RunUpdate):
                update = item if update is None else _merge(update, item)
        parts = ([(update, "its row")] if update is not None else []) + [
            (item, "its parameters" if isinstance(item, RunParameters) else "its resource samples")
            for item in items if not isinstance(item, RunUpdate)]
        refused = []
        for item, what in parts:
            try:
                write_batch(self._conn, [item])
            except _REFUSED as exc:
                refused.append(f"{what} ({_error_text(exc)})")
                if item is update:  # the run gets a row all the same: its parameters and samples need one
                    write_rejected(self._conn, key, update, f"the database refused its row ({_error_text(exc)})")
        if not refused:
            return  # each part alone was accepted
        status = f"; its status then: {update.status.value}" if update is not None else ""
        reason = f"the database refused {', '.join(refused)}{status}; what was refused is not stored"
        write_rejected(self._conn, key, None, reason)
        self.stats.rejected.append({"trace": key.trace_name, "seq": key.seq, "reason": reason})
        log.error("run %s #%d: %s", key.trace_name, key.seq, reason)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
