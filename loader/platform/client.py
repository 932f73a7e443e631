"""The OpenWhisk REST client of the loader: invoke (non-blocking), fetch records, check actions.

Keep-alive connections through :mod:`loader.platform.http` (one connection per thread, a tenth of
``requests``' CPU per call), TLS verification from the configuration,
Basic authentication with the invoking user's key; proxies and ``.netrc`` from the
environment never interfere.  Outcomes are typed records; nothing here raises on an HTTP
or network problem.
"""

from __future__ import annotations

import base64
import email.utils
import enum
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from loader.config import OpenWhiskConfig
from loader.platform.http import HttpTransport, NotSent, Response, TransportError
from loader.platform.keys import UserKey


class InvokeStatus(enum.Enum):
    ACCEPTED = "accepted"                  # 202 (or 200) with an activation id
    THROTTLED = "throttled"                # 429
    HTTP_ERROR = "http_error"              # any other status
    CONNECTION_ERROR = "connection_error"  # no HTTP answer


@dataclass(frozen=True, slots=True)
class InvokeOutcome:
    status: InvokeStatus
    attempts: int
    activation_id: str | None = None
    http_status: int | None = None
    reason: str | None = None
    #: The platform provably did not process the call (no connection, 429, 503 with Retry-After):
    #: sending it again cannot run the action twice.
    not_processed: bool = False
    #: How long the platform asked to wait before sending again (``Retry-After``), if it said.
    retry_after_s: float | None = None


class FetchStatus(enum.Enum):
    FOUND = "found"
    NOT_FOUND = "not_found"   # 404: not stored yet (or never will be)
    ERROR = "error"           # another status or a network error


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    status: FetchStatus
    record: dict | None = None
    http_status: int | None = None
    reason: str | None = None


def retry_after_s(response: Response, now_epoch_s: Callable[[], float] = time.time) -> float | None:
    """The ``Retry-After`` header in seconds (delay-seconds or an HTTP-date), or None when absent or malformed."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_epoch_s())


def _json(response: Response) -> Any:
    """The body as JSON; raises ValueError when it is not."""
    return json.loads(response.body)


def _error_text(response: Response) -> str:
    try:
        body = _json(response)
        if isinstance(body, dict) and "error" in body:
            return f"HTTP {response.status}: {body['error']}"
    except ValueError:
        pass
    text = response.body.decode("utf-8", "replace").strip().replace("\n", " ")
    return f"HTTP {response.status}: {text[:200]}" if text else f"HTTP {response.status}"


def _network_text(exc: TransportError) -> str:
    return str(exc)[:300] or type(exc).__name__


@functools.lru_cache(maxsize=65536)
def _basic_auth(uuid: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{uuid}:{key}".encode()).decode("ascii")


def invoke_outcome(response: Response, attempts: int = 1) -> InvokeOutcome:
    """What an answer to a non-blocking invoke means, and whether the platform provably did not process it."""
    status = response.status
    if status in (200, 202):
        try:
            activation_id = _json(response).get("activationId") or response.headers.get("x-openwhisk-activation-id")
        except (ValueError, AttributeError):
            activation_id = response.headers.get("x-openwhisk-activation-id")
        if activation_id:
            return InvokeOutcome(InvokeStatus.ACCEPTED, attempts, activation_id=activation_id, http_status=status)
        return InvokeOutcome(InvokeStatus.HTTP_ERROR, attempts, http_status=status,
                             reason=f"HTTP {status} without an activation id")
    wait_s = retry_after_s(response)
    if status == 429:  # OpenWhisk's throttles reject a call before any activation
        return InvokeOutcome(InvokeStatus.THROTTLED, attempts, http_status=status, reason=_error_text(response),
                             not_processed=True, retry_after_s=wait_s)
    taken = status == 503 and wait_s is not None  # "not taken, come back later"; any other 5xx may hide a run
    return InvokeOutcome(InvokeStatus.HTTP_ERROR, attempts, http_status=status, reason=_error_text(response),
                         not_processed=taken, retry_after_s=wait_s if taken else None)


def fetch_outcome(response: Response) -> FetchOutcome:
    """What an answer to a GET of a record (activation, action, limits) means."""
    if response.status == 200:
        try:
            record = _json(response)
        except ValueError:
            return FetchOutcome(FetchStatus.ERROR, http_status=200, reason="HTTP 200 with a body that is not JSON")
        if not isinstance(record, dict):
            return FetchOutcome(FetchStatus.ERROR, http_status=200, reason="HTTP 200 with a body that is not an object")
        return FetchOutcome(FetchStatus.FOUND, record=record, http_status=200)
    if response.status == 404:
        return FetchOutcome(FetchStatus.NOT_FOUND, http_status=404, reason=_error_text(response))
    return FetchOutcome(FetchStatus.ERROR, http_status=response.status, reason=_error_text(response))


def network_outcome(reason: str) -> FetchOutcome:
    """A GET that got no HTTP answer."""
    return FetchOutcome(FetchStatus.ERROR, reason=reason[:300] or "no answer")


def action_path(action: str) -> str:
    """``name`` or ``package/name`` as a URL path, each segment quoted."""
    return "/".join(quote(part, safe="") for part in action.split("/"))


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Everything an :class:`OpenWhiskClient` is built from (picklable: sender processes build their own).

    :meth:`of_config` is the one place a client's settings come from the configuration.
    """

    apihost: str
    tls_verify: bool = True
    timeout_s: float = 10.0
    #: How a sender retries what provably did not reach the platform (:class:`loader.sending.retries.RetryPolicy`).
    invoke_retries: int = 0
    retry_backoff_s: float = 1.0

    @classmethod
    def of_config(cls, section: OpenWhiskConfig) -> ClientSettings:
        return cls(section.apihost, section.tls_verify, section.request_timeout_s, section.invoke_retries,
                   section.invoke_retry_backoff_s)

    def client(self) -> OpenWhiskClient:
        return OpenWhiskClient(self.apihost, tls_verify=self.tls_verify, timeout_s=self.timeout_s)


def make_client(section: OpenWhiskConfig) -> OpenWhiskClient:
    """The client of the configuration's ``openwhisk`` section (with its timeout)."""
    return ClientSettings.of_config(section).client()


class OpenWhiskClient:
    """REST calls to one API host; safe to share between threads (a connection per thread)."""

    def __init__(self, apihost: str, *, tls_verify: bool = True, timeout_s: float = 10.0):
        self.apihost = apihost.rstrip("/")
        self.base_url = self.apihost + "/api/v1/namespaces/_"
        self.tls_verify = tls_verify
        self.timeout_s = timeout_s
        self._transport = HttpTransport(self.base_url, tls_verify=tls_verify, timeout_s=timeout_s)

    @property
    def settings(self) -> ClientSettings:
        """This client's settings (no retries: the pipeline adds its retry policy for the senders)."""
        return ClientSettings(self.apihost, self.tls_verify, self.timeout_s)

    def _headers(self, user: UserKey, body: Any) -> tuple[dict[str, str], bytes | None]:
        headers = {"Authorization": _basic_auth(user.uuid, user.key), "Accept": "application/json"}
        if body is None:
            return headers, None
        headers["Content-Type"] = "application/json"
        return headers, json.dumps(body).encode()

    def _request(self, method: str, user: UserKey, path: str, *, query: dict[str, str] | None = None,
                 body: Any = None) -> Response:
        """Raises :class:`TransportError` when no HTTP answer came."""
        headers, data = self._headers(user, body)
        return self._transport.request(method, path, query=query, body=data, headers=headers)

    # ------------------------------------------------------------------ invoke

    def invoke_request(self, user: UserKey, action: str, parameters: dict[str, Any]) -> bytes:
        """The bytes of one non-blocking invoke (for senders with their own sockets)."""
        headers, data = self._headers(user, parameters)
        return self._transport.encode_request("POST", f"/actions/{action_path(action)}", query={"blocking": "false"},
                                              body=data, headers=headers)

    def invoke(self, user: UserKey, action: str, parameters: dict[str, Any]) -> InvokeOutcome:
        """One non-blocking POST, never retried here (:mod:`loader.sending.retries` reschedules).

        The outcome says what the platform answered, and whether it provably did not process the
        call (``not_processed``): no connection could be opened, 429, or 503 with ``Retry-After``.
        """
        try:
            response = self._request("POST", user, f"/actions/{action_path(action)}",
                                     query={"blocking": "false"}, body=parameters)
        except TransportError as exc:
            return InvokeOutcome(InvokeStatus.CONNECTION_ERROR, 1, reason=_network_text(exc),
                                 not_processed=isinstance(exc, NotSent))
        return invoke_outcome(response)

    # ------------------------------------------------------------------ records and actions

    def get_activation(self, user: UserKey, activation_id: str) -> FetchOutcome:
        return self._fetch(user, f"/activations/{quote(activation_id, safe='')}")

    def get_action(self, user: UserKey, action: str) -> FetchOutcome:
        return self._fetch(user, f"/actions/{action_path(action)}", query={"code": "false"})

    def get_limits(self, user: UserKey) -> FetchOutcome:
        """The user's effective limits (``invocationsPerMinute``, ``concurrentInvocations``, ...)."""
        return self._fetch(user, "/limits")

    def put(self, user: UserKey, path: str, body: dict) -> tuple[int | None, str]:
        """``PUT path?overwrite=true`` (create or update an entity): (HTTP status or None, error text)."""
        try:
            response = self._request("PUT", user, path, query={"overwrite": "true"}, body=body)
        except TransportError as exc:
            return None, _network_text(exc)
        return response.status, "" if response.status == 200 else _error_text(response)

    def activation_request(self, user: UserKey, activation_id: str) -> bytes:
        """The bytes of one activation-record GET (for fetchers with their own sockets, :func:`fetch_outcome`)."""
        headers, _ = self._headers(user, None)
        return self._transport.encode_request("GET", f"/activations/{quote(activation_id, safe='')}", headers=headers)

    @property
    def transport(self) -> HttpTransport:
        """The origin's host, port and TLS context (its blocking connections are this client's own)."""
        return self._transport

    def _fetch(self, user: UserKey, path: str, *, query: dict[str, str] | None = None) -> FetchOutcome:
        try:
            response = self._request("GET", user, path, query=query)
        except TransportError as exc:
            return FetchOutcome(FetchStatus.ERROR, reason=_network_text(exc))
        return fetch_outcome(response)

    def close(self) -> None:
        self._transport.close()
