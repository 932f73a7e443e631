"""Activation-record fetches on an event loop: every due fetch sent at once, on keep-alive connections.

Eight blocking fetch threads capped the completion path at ~2,700 records/s against nginx
(bench/completion_pipeline.py, monitor on, 5,000 events/s: consumed → record fetched p50
2.2 s) while the process used 70% of one core: each thread waited for its answer, then for
the GIL, so eight fetches in flight at ~3 ms each was the ceiling.  Here each fetch is
written at once on an idle connection of the pool, or on a new one, up to ``max_in_flight``
fetches in flight (``completion:fetches_in_flight``); beyond it they wait for an answer to
free a connection (:class:`~loader.platform.connection_pool.ConnectionPool`, the sender
processes' pool too).  Answers are parsed as they arrive (:mod:`loader.platform.http_async`)
and handed to ``answer(ticket, outcome)``.  Alone against nginx, one loop fetches 10,000
records/s at ~36 µs of CPU each, p99 6 ms; it runs in a process of its own
(:mod:`loader.completion.fetch_process`, which says why).

A kept-alive connection closed by the server just as it was reused (nothing came back) is
retried once on a new connection (a GET is idempotent); any other failure, and a fetch
without an answer within the client's timeout, is an ``error`` outcome: the tracker
schedules the fetch again with its backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from loader.platform.client import FetchOutcome, OpenWhiskClient, fetch_outcome, network_outcome
from loader.platform.connection_pool import ConnectionPool
from loader.platform.http import Response
from loader.platform.http_async import AnswerConnection
from loader.platform.keys import UserKey

log = logging.getLogger(__name__)

#: How often fetches in flight are checked against their timeout.
SWEEP_S = 0.05

#: ``answer(ticket, outcome)``: the outcome of the fetch submitted with ``ticket``.
Answer = Callable[[int, FetchOutcome], None]


@dataclass(slots=True, eq=False)
class _Fetch:
    ticket: int
    data: bytes
    connection: AnswerConnection | None = None
    answered: bool = False
    deadline_s: float = 0.0
    resent: bool = False


@dataclass
class FetchStats:
    fetched: int = 0
    connections_opened: int = 0
    peak_in_flight: int = 0
    held: int = 0        # fetches that waited for the in-flight cap
    peak_waiting: int = 0
    resent: int = 0      # sent again after a reused connection closed without an answer


class RecordFetches(ConnectionPool[_Fetch, FetchStats]):
    """Record fetches on the running event loop; ``answer(ticket, outcome)`` for each, on that loop."""

    def __init__(self, client: OpenWhiskClient, max_in_flight: int, answer: Answer):
        transport = client.transport
        super().__init__(transport.host, transport.port, transport.ssl_context, "GET", timeout_s=client.timeout_s,
                         max_in_flight=max_in_flight, stats=FetchStats())
        self.client = client
        self.answer = answer
        self.loop.call_later(SWEEP_S, self._sweep)

    def submit(self, ticket: int, user: UserKey, activation_id: str) -> None:
        """Fetch the record of ``activation_id`` now, or once the cap on fetches in flight allows."""
        self._admit(_Fetch(ticket, self.client.activation_request(user, activation_id)))

    def _answered_request(self, fetch: _Fetch, response: Response) -> None:
        self._finish(fetch, fetch_outcome(response))

    def _failed_request(self, fetch: _Fetch, reason: str, silent_reuse: bool) -> None:
        if silent_reuse and not fetch.resent:   # the server's idle timeout raced the request
            fetch.resent = True
            self.stats.resent += 1
            self._send(fetch)
            return
        self._finish(fetch, network_outcome(reason))

    def _connect_failed(self, fetch: _Fetch, reason: str) -> None:
        self._finish(fetch, network_outcome(reason))

    def _finish(self, fetch: _Fetch, outcome: FetchOutcome) -> None:
        self.stats.fetched += 1
        self.answer(fetch.ticket, outcome)
        self._release()

    def _sweep(self) -> None:
        self.sweep()
        self.loop.call_later(SWEEP_S, self._sweep)
