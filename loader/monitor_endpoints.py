"""One monitor per invoker host: endpoints, the TCP client, and the router by the user event's ``source``.

OpenWhisk's ``Activation`` user event names the invoker that ran the activation in its
``source`` (``invoker0``); that invoker's host runs the monitor that sampled the container.
``monitor:endpoints`` maps invoker names to measurement endpoints, ``unix:///path`` or
``tcp://host:port`` (TCP clients open with the shared token of ``monitor:token_file``).

:class:`MonitorRouter` asks the monitor of the activation's invoker.  When the source is not
known (no user event: the record was polled) or has no endpoint, it asks every monitor in
turn, in the order of their invoker names, and keeps the first answer that knows the
activation, naming its invoker (``MonitorAnswer.invoker``: the run's ``invoker`` column then
comes from it; docs/scale-out.md, Several monitors).
"""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from faasload.monitor_tcp import encode_auth, parse_host_port
from faasload.token_file import read_token
from loader.monitor_client import (
    MonitorAnswer,
    MonitorClient,
    MonitorDown,
    ResourcesQuery,
    ResourcesStatus,
    _remaining,
)
from loader.storage.rows import NO_SAMPLES

log = logging.getLogger(__name__)

#: Answers after which the router stops asking the other monitors.
_FINAL = {ResourcesStatus.OK, ResourcesStatus.EMPTY, ResourcesStatus.AMBIGUOUS, ResourcesStatus.ERROR}
#: Answers of a monitor that knew the activation: its host ran it.
_KNEW = {ResourcesStatus.OK, ResourcesStatus.EMPTY}


class EndpointError(ValueError):
    """An endpoint URL that is neither ``unix:///path`` nor ``tcp://host:port``."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    path: str | None = None          # unix
    host: str | None = None          # tcp
    port: int | None = None

    @property
    def tcp(self) -> bool:
        return self.host is not None


def parse_endpoint(url: str) -> Endpoint:
    """``unix:///run/faasload/meas`` or ``tcp://10.0.0.2:9300``; :class:`EndpointError` otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise EndpointError(f"expected unix:///absolute/path (three slashes), got {url!r}")
        return Endpoint(url, path=parts.path)
    if parts.scheme == "tcp":
        if parts.path not in ("", "/"):
            raise EndpointError(f"expected tcp://host:port, got {url!r}")
        try:
            host, port = parse_host_port(parts.netloc)
        except ValueError as exc:
            raise EndpointError(str(exc)) from None
        return Endpoint(url, host=host, port=port)
    raise EndpointError(f"expected unix:///path or tcp://host:port, got {url!r}")


#: How a connection the monitor closed, the query unread, shows in an error text.
_CLOSED_BY_PEER = tuple(f"[Errno {number}]" for number in (errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE))


class TcpMonitorClient(MonitorClient):
    """A monitor's measurement socket over TCP: the token line, then the same query and answer."""

    def __init__(self, host: str, port: int, token: str, timeout_s: float = 2.0):
        super().__init__(f"tcp://{host}:{port}", timeout_s)
        self.host, self.port = host, port
        self._auth = encode_auth(token)

    def __repr__(self) -> str:  # never show the token
        return f"TcpMonitorClient({self.host}:{self.port})"

    def _connect(self, deadline_s: float) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=_remaining(deadline_s))
        except (ConnectionRefusedError, socket.gaierror) as exc:
            raise MonitorDown(f"{self.socket_path}: {exc.strerror or exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(self._auth)
        except BaseException:
            sock.close()
            raise
        return sock

    def _ask(self, request: bytes, deadline_s: float):
        try:
            return super()._ask(request, deadline_s)
        except MonitorDown as exc:
            # A monitor that refuses the token closes the connection without a byte: the close
            # shows as an end without an answer, or (the query still unread) as a reset.
            if str(exc).endswith("without an answer") or any(marker in str(exc) for marker in _CLOSED_BY_PEER):
                raise MonitorDown(f"{exc} (does monitor:token_file hold the monitor's token?)") from None
            raise


def client_for(endpoint: Endpoint, token: str | None, timeout_s: float) -> MonitorClient:
    if endpoint.host is not None and endpoint.port is not None:
        if token is None:
            raise EndpointError(f"{endpoint.url}: a tcp:// endpoint needs monitor:token_file")
        return TcpMonitorClient(endpoint.host, endpoint.port, token, timeout_s)
    assert endpoint.path is not None
    return MonitorClient(endpoint.path, timeout_s)


class MonitorRouter:
    """Several monitors, one per invoker; the same ``samples_for_activation`` as one client."""

    def __init__(self, clients: dict[str, MonitorClient]):
        if not clients:
            raise ValueError("a router needs at least one monitor")
        self.clients = dict(sorted(clients.items()))
        self.asked: dict[str, int] = dict.fromkeys(self.clients, 0)
        self._warned: set[str] = set()

    def samples_for_activation(self, activation_id: str, *, source: str | None = None, **hints) -> MonitorAnswer:
        client = self.clients.get(source) if source is not None else None
        if source is not None and client is not None:
            self.asked[source] += 1
            return client.samples_for_activation(activation_id, **hints)
        if source is not None and source not in self._warned:
            self._warned.add(source)
            log.warning("user events name invoker %r, which has no entry in monitor:endpoints: asking every "
                        "monitor for its activations", source)
        return self._ask_all(activation_id, hints)

    def samples_for_activations(self, queries: list[ResourcesQuery]) -> list[MonitorAnswer]:
        """One batch per monitor: each query to its invoker's monitor; those of an unknown invoker to
        every monitor in turn, each asked only for what the ones before did not know."""
        answers: list[MonitorAnswer | None] = [None] * len(queries)
        by_client: dict[str, list[int]] = {}
        unknown: list[int] = []
        for index, query in enumerate(queries):
            if query.source is not None and query.source in self.clients:
                by_client.setdefault(query.source, []).append(index)
            else:
                if query.source is not None and query.source not in self._warned:
                    self._warned.add(query.source)
                    log.warning("user events name invoker %r, which has no entry in monitor:endpoints: asking "
                                "every monitor for its activations", query.source)
                unknown.append(index)
        for invoker, indexes in by_client.items():
            self.asked[invoker] += len(indexes)
            for index, answer in zip(indexes, self.clients[invoker].samples_for_activations(
                    [queries[i] for i in indexes])):
                answers[index] = answer
        tried: dict[int, list[tuple[str, MonitorAnswer]]] = {index: [] for index in unknown}
        for invoker, client in self.clients.items():
            if not unknown:
                break
            self.asked[invoker] += len(unknown)
            still = []
            for index, answer in zip(unknown, client.samples_for_activations([queries[i] for i in unknown])):
                if answer.status in _FINAL:
                    answers[index] = _from(invoker, answer)
                else:
                    tried[index].append((invoker, answer))
                    still.append(index)
            unknown = still
        for index in unknown:
            answers[index] = _none_knows(tried[index])
        return [answer for answer in answers if answer is not None]

    def _ask_all(self, activation_id: str, hints: dict) -> MonitorAnswer:
        answers = []
        for invoker, client in self.clients.items():
            self.asked[invoker] += 1
            answer = client.samples_for_activation(activation_id, **hints)
            if answer.status in _FINAL:
                return _from(invoker, answer)
            answers.append((invoker, answer))
        return _none_knows(answers)


def _from(invoker: str, answer: MonitorAnswer) -> MonitorAnswer:
    """``answer``, naming ``invoker`` when its monitor knew the activation."""
    return replace(answer, invoker=invoker) if answer.status in _KNEW else answer


def _none_knows(answers: list[tuple[str, MonitorAnswer]]) -> MonitorAnswer:
    """What every monitor answered an activation none of them knows."""
    reasons = "; ".join(f"{invoker}: {a.status.value} ({a.reason})" for invoker, a in answers)
    status = (ResourcesStatus.MONITOR_DOWN if all(a.status is ResourcesStatus.MONITOR_DOWN for _, a in answers)
              else ResourcesStatus.UNKNOWN)
    return MonitorAnswer(NO_SAMPLES, status, f"no monitor knows the activation (its invoker is not known): {reasons}")


def open_monitors(endpoints: dict[str, str], token_file: Path | None, timeout_s: float) -> MonitorRouter:
    """The router over ``monitor:endpoints`` (the token file is read once, here)."""
    parsed = {invoker: parse_endpoint(url) for invoker, url in endpoints.items()}
    token = read_token(token_file) if token_file is not None and any(e.tcp for e in parsed.values()) else None
    return MonitorRouter({invoker: client_for(e, token, timeout_s) for invoker, e in parsed.items()})
