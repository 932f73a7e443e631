"""Activation records and their in-memory store (docs/openwhisk-contract.md: Activation record,
Reading activations).

A record is stored only once its activation completed; ``GET`` answers 404 before.
"""

from __future__ import annotations

import enum
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

ACTIVATION_ID_RE = re.compile(r"\A[0-9a-f]{32}\Z")


class StatusCode(enum.IntEnum):
    """``response.statusCode`` and its REST ``status`` text (``ActivationResponse``)."""

    SUCCESS = 0
    APPLICATION_ERROR = 1
    DEVELOPER_ERROR = 2
    WHISK_ERROR = 3

    @property
    def text(self) -> str:
        return ("success", "application error", "action developer error", "whisk internal error")[self.value]


@dataclass(frozen=True, slots=True)
class ActivationResponse:
    status_code: StatusCode
    result: Any
    size: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"status": self.status_code.text, "success": self.status_code is StatusCode.SUCCESS,
               "result": self.result}
        if self.size is not None:
            out["size"] = self.size
        return out


@dataclass(frozen=True, slots=True)
class ActivationRecord:
    activation_id: str
    namespace: str           # the invoking namespace
    name: str                # the action name
    subject: str
    version: str
    start_ms: int
    end_ms: int
    response: ActivationResponse
    logs: tuple[str, ...]
    annotations: tuple[tuple[str, Any], ...]

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms

    def annotation(self, key: str, default: Any = None) -> Any:
        return dict(self.annotations).get(key, default)

    def to_json(self) -> dict[str, Any]:
        """``WhiskActivation.toExtendedJson``: no ``statusCode`` inside ``response``."""
        out = {"activationId": self.activation_id, "namespace": self.namespace, "name": self.name,
               "subject": self.subject, "version": self.version, "publish": False,
               "start": self.start_ms, "end": self.end_ms, "duration": self.duration_ms,
               "response": self.response.to_json(), "logs": list(self.logs),
               "annotations": [{"key": k, "value": v} for k, v in self.annotations]}
        return out

    def summary_json(self) -> dict[str, Any]:
        """The list item without ``docs``: top-level ``statusCode``, no ``response``/``logs``."""
        return {"namespace": self.namespace, "name": self.name, "version": self.version, "publish": False,
                "annotations": [{"key": k, "value": v} for k, v in self.annotations],
                "activationId": self.activation_id, "start": self.start_ms, "end": self.end_ms,
                "duration": self.duration_ms, "statusCode": int(self.response.status_code)}


class ActivationStore:
    """Completed records by id (bounded, oldest dropped); waiters wake when one is stored."""

    def __init__(self, max_records: int):
        self.max_records = max_records
        self._records: OrderedDict[str, ActivationRecord] = OrderedDict()
        self._cond = threading.Condition()

    def put(self, record: ActivationRecord) -> None:
        with self._cond:
            self._records[record.activation_id] = record
            while len(self._records) > self.max_records:
                self._records.popitem(last=False)
            self._cond.notify_all()

    def get(self, activation_id: str) -> ActivationRecord | None:
        return self._records.get(activation_id)

    def wait_for(self, activation_id: str, timeout_s: float) -> ActivationRecord | None:
        """The record once stored, or None after ``timeout_s``."""
        with self._cond:
            if self._cond.wait_for(lambda: activation_id in self._records, timeout_s):
                return self._records[activation_id]
        return None

    def query(self, namespace: str, *, name: str | None = None, since_ms: int | None = None,
              upto_ms: int | None = None) -> list[ActivationRecord]:
        """Matching records of ``namespace``, newest ``start`` first (bounds inclusive)."""
        with self._cond:
            records = list(self._records.values())
        out = [r for r in records if r.namespace == namespace
               and (name is None or r.name == name)
               and (since_ms is None or r.start_ms >= since_ms)
               and (upto_ms is None or r.start_ms <= upto_ms)]
        out.sort(key=lambda r: r.start_ms, reverse=True)
        return out
