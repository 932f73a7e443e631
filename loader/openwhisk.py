"""The OpenWhisk REST client of the loader: invoke (non-blocking), fetch records, check actions.

One ``requests.Session`` per thread (keep-alive, ``trust_env=False`` so proxies and
``.netrc`` from the environment never interfere), TLS verification from the
configuration, Basic authentication with the invoking user's key.  Outcomes are typed
records; nothing here raises on an HTTP or network problem.
"""

from __future__ import annotations

import enum
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

import requests

from .authkeys import UserKey


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


def _retryable(outcome: InvokeOutcome) -> bool:
    return (outcome.status in (InvokeStatus.THROTTLED, InvokeStatus.CONNECTION_ERROR)
            or (outcome.http_status is not None and outcome.http_status >= 500))


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and "error" in body:
            return f"HTTP {response.status_code}: {body['error']}"
    except ValueError:
        pass
    text = response.text.strip().replace("\n", " ")
    return f"HTTP {response.status_code}: {text[:200]}" if text else f"HTTP {response.status_code}"


def _network_text(exc: requests.RequestException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


def action_path(action: str) -> str:
    """``name`` or ``package/name`` as a URL path, each segment quoted."""
    return "/".join(quote(part, safe="") for part in action.split("/"))


class OpenWhiskClient:
    """REST calls to one API host; safe to share between threads (a session per thread)."""

    def __init__(self, apihost: str, *, tls_verify: bool = True, timeout_s: float = 10.0,
                 invoke_retries: int = 0, retry_backoff_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.base_url = apihost.rstrip("/") + "/api/v1/namespaces/_"
        self.tls_verify = tls_verify
        self.timeout_s = timeout_s
        self.invoke_retries = invoke_retries
        self.retry_backoff_s = retry_backoff_s
        self._sleep = sleep
        self._local = threading.local()

    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.verify = self.tls_verify
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def _request(self, method: str, user: UserKey, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("headers", {"Accept": "application/json"})
        return self.session().request(method, self.base_url + path, auth=user.auth, timeout=self.timeout_s,
                                      **kwargs)

    # ------------------------------------------------------------------ invoke

    def invoke_once(self, user: UserKey, action: str, parameters: dict[str, Any]) -> InvokeOutcome:
        """One non-blocking POST; the outcome says what the platform answered."""
        try:
            response = self._request("POST", user, f"/actions/{action_path(action)}",
                                     params={"blocking": "false"}, data=json.dumps(parameters),
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        except requests.RequestException as exc:
            return InvokeOutcome(InvokeStatus.CONNECTION_ERROR, 1, reason=_network_text(exc))
        status = response.status_code
        if status in (200, 202):
            try:
                activation_id = response.json().get("activationId") or response.headers.get("x-openwhisk-activation-id")
            except (ValueError, AttributeError):
                activation_id = response.headers.get("x-openwhisk-activation-id")
            if activation_id:
                return InvokeOutcome(InvokeStatus.ACCEPTED, 1, activation_id=activation_id, http_status=status)
            return InvokeOutcome(InvokeStatus.HTTP_ERROR, 1, http_status=status,
                                 reason=f"HTTP {status} without an activation id")
        if status == 429:
            return InvokeOutcome(InvokeStatus.THROTTLED, 1, http_status=status, reason=_error_text(response))
        return InvokeOutcome(InvokeStatus.HTTP_ERROR, 1, http_status=status, reason=_error_text(response))

    def invoke(self, user: UserKey, action: str, parameters: dict[str, Any],
               *, give_up: Callable[[], bool] = lambda: False) -> InvokeOutcome:
        """Invoke, retrying 429, 5xx and connection errors ``invoke_retries`` times (backoff doubling).

        ``give_up()`` is checked before each retry (the loader is stopping).
        """
        backoff_s = self.retry_backoff_s
        attempts = 0
        while True:
            outcome = self.invoke_once(user, action, parameters)
            attempts += 1
            if outcome.status is InvokeStatus.ACCEPTED or not _retryable(outcome) \
                    or attempts > self.invoke_retries or give_up():
                return InvokeOutcome(outcome.status, attempts, outcome.activation_id, outcome.http_status,
                                     outcome.reason)
            self._sleep(backoff_s)
            backoff_s *= 2

    # ------------------------------------------------------------------ records and actions

    def get_activation(self, user: UserKey, activation_id: str) -> FetchOutcome:
        return self._fetch(user, f"/activations/{quote(activation_id, safe='')}")

    def get_action(self, user: UserKey, action: str) -> FetchOutcome:
        return self._fetch(user, f"/actions/{action_path(action)}", params={"code": "false"})

    def _fetch(self, user: UserKey, path: str, **kwargs) -> FetchOutcome:
        try:
            response = self._request("GET", user, path, **kwargs)
        except requests.RequestException as exc:
            return FetchOutcome(FetchStatus.ERROR, reason=_network_text(exc))
        if response.status_code == 200:
            try:
                record = response.json()
            except ValueError:
                return FetchOutcome(FetchStatus.ERROR, http_status=200, reason="HTTP 200 with a body that is not JSON")
            if not isinstance(record, dict):
                return FetchOutcome(FetchStatus.ERROR, http_status=200, reason="HTTP 200 with a body that is not an object")
            return FetchOutcome(FetchStatus.FOUND, record=record, http_status=200)
        if response.status_code == 404:
            return FetchOutcome(FetchStatus.NOT_FOUND, http_status=404, reason=_error_text(response))
        return FetchOutcome(FetchStatus.ERROR, http_status=response.status_code, reason=_error_text(response))

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
