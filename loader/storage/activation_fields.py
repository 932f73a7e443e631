"""From an OpenWhisk activation record (REST shape) to the dataset's fields.

Pure functions, no I/O.  The record is the source of truth for a completed run; the
user event (:mod:`loader.completion.user_events`) only says that the record should now exist.
"""

from __future__ import annotations

import json
from typing import Any

from loader.storage.rows import RunStatus


def record_annotations(record: dict) -> dict[str, Any]:
    """The record's ``[{key, value}]`` annotations as a mapping."""
    found = {}
    for item in record.get("annotations") or ():
        if isinstance(item, dict) and "key" in item:
            found[item["key"]] = item.get("value")
    return found


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def record_status(record: dict) -> RunStatus:
    """The run status from ``response.status`` (falling back to ``statusCode`` or ``success``)."""
    response = record.get("response") or {}
    status = response.get("status")
    if isinstance(status, str):
        try:
            return RunStatus.from_response_status(status)
        except KeyError:
            pass
    code = response.get("statusCode", record.get("statusCode"))
    if isinstance(code, int) and code in (0, 1, 2, 3):
        return RunStatus.from_status_code(code)
    if response.get("success") is True:
        return RunStatus.SUCCESS
    return RunStatus.INTERNAL_ERROR


def _error_text(result: Any) -> str | None:
    if not isinstance(result, dict) or "error" not in result:
        return None
    error = result["error"]
    return error if isinstance(error, str) else json.dumps(error, sort_keys=True)


def completion_fields(record: dict) -> dict[str, Any]:
    """The :class:`loader.storage.rows.RunUpdate` fields a stored activation record gives.

    ``cold_start`` is true when the record has an ``initTime`` annotation (OpenWhisk
    adds it only on cold starts); ``outputsize`` and ``times`` (extract, transform,
    load, ms) come from the action's result when it returns them.
    """
    notes = record_annotations(record)
    raw_response, raw_limits = record.get("response"), notes.get("limits")
    response: dict[str, Any] = raw_response if isinstance(raw_response, dict) else {}
    result = response.get("result")
    limits: dict[str, Any] = raw_limits if isinstance(raw_limits, dict) else {}
    times: dict[str, Any] = (result["times"] if isinstance(result, dict) and isinstance(result.get("times"), dict)
                             else {})
    init_time = _int(notes.get("initTime"))
    status = record_status(record)
    error = _error_text(result)
    return {
        "status": status,
        "status_reason": None if status is RunStatus.SUCCESS else (error or response.get("status")),
        "start_ms": _int(record.get("start")),
        "end_ms": _int(record.get("end")),
        "duration_ms": _int(record.get("duration")),
        "wait_time_ms": _int(notes.get("waitTime")),
        "init_time_ms": init_time,
        "cold_start": "initTime" in notes,
        "kind": notes.get("kind") if isinstance(notes.get("kind"), str) else None,
        "memory_limit_mb": _int(limits.get("memory")),
        "response_size_bytes": _int(response.get("size")),
        "output_size_bytes": _int(result.get("outputsize")) if isinstance(result, dict) else None,
        "extract_ms": _float(times.get("extract")),
        "transform_ms": _float(times.get("transform")),
        "load_ms": _float(times.get("load")),
        "result_error": error,
    }


#: What :func:`completion_fields` and the monitor query read of a record, and nothing else.
_RECORD_KEYS = ("activationId", "namespace", "name", "start", "end", "duration", "statusCode", "annotations")
_RESPONSE_KEYS = ("status", "statusCode", "success", "size")
_RESULT_KEYS = ("error", "times", "outputsize")


def slim_record(record: dict) -> dict:
    """The parts of an activation record that the loader reads (:func:`completion_fields`, the
    namespace and name of the monitor query): the record-fetch process sends only these to the
    pipeline, since a record's ``logs`` and ``result`` can be megabytes (OpenWhisk's default log
    limit is 10 MB), and every byte is pickled once and unpickled once on the way."""
    slim = {key: record[key] for key in _RECORD_KEYS if key in record}
    response = record.get("response")
    if isinstance(response, dict):
        kept = {key: response[key] for key in _RESPONSE_KEYS if key in response}
        result = response.get("result")
        if isinstance(result, dict):   # any other result gives no field
            kept["result"] = {key: result[key] for key in _RESULT_KEYS if key in result}
        slim["response"] = kept
    elif "response" in record:
        slim["response"] = response
    return slim

