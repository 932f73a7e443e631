"""Runs activations in pooled containers and builds their records (OpenWhisk's ContainerProxy).

For one activation: get a container (warm, or cold: create it and ``/init``), ``/run`` with
the parameters and the ``__OW_*`` context, read its logs up to the sentinel, map the answer
to a status (``processInitResponseContent``/``processRunResponseContent``), store the record,
publish the user event. Containers whose activation ended in a developer or whisk error are
destroyed, as OpenWhisk does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .activations import ActivationRecord, ActivationResponse, ActivationStore, StatusCode
from .backends import LogLine, rfc3339_ns
from .entities import Action
from .pool import ContainerPool, Pooled
from .runtime_client import CallOutcome, RuntimeAnswer
from .users import Identity

LOG = logging.getLogger(__name__)
LOG_WARNING_DEVELOPER_ERROR = "The action did not initialize or run as expected. Log data might be missing."


@dataclass(frozen=True, slots=True)
class Job:
    activation_id: str
    transaction_id: str
    identity: Identity
    action: Action
    params: dict[str, Any]
    received_ms: int


def now_ms() -> int:
    return int(time.time() * 1000)


def _error_result(value: Any) -> dict[str, Any]:
    return {"error": value}


def init_failure(answer: RuntimeAnswer) -> ActivationResponse:
    """``processInitResponseContent`` for an init that did not answer 200."""
    if answer.outcome is not CallOutcome.ANSWERED:
        return ActivationResponse(StatusCode.DEVELOPER_ERROR, _error_result(errors.ABNORMAL_INITIALIZATION))
    try:
        parsed = json.loads(answer.body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return ActivationResponse(StatusCode.DEVELOPER_ERROR,
                                  _error_result(parsed.get("error", errors.invalid_init_response(answer.body))))
    return ActivationResponse(StatusCode.DEVELOPER_ERROR, _error_result(errors.invalid_init_response(answer.body)))


def run_response(answer: RuntimeAnswer, max_payload_bytes: int) -> ActivationResponse:
    """``processRunResponseContent`` for an answered ``/run``."""
    body = answer.body
    size = len(body)
    if len(body.encode("utf-8", errors="replace")) > max_payload_bytes:
        return ActivationResponse(StatusCode.APPLICATION_ERROR,
                                  _error_result(errors.truncated_response(size, max_payload_bytes)), size)
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    ok = answer.status == 200
    if isinstance(parsed, dict):
        if ok:
            code = StatusCode.APPLICATION_ERROR if "error" in parsed else StatusCode.SUCCESS
            return ActivationResponse(code, parsed, size)
        return ActivationResponse(StatusCode.DEVELOPER_ERROR,
                                  _error_result(parsed.get("error", errors.invalid_run_response(body))), size)
    if isinstance(parsed, list) and ok:
        return ActivationResponse(StatusCode.SUCCESS, parsed, size)
    return ActivationResponse(StatusCode.DEVELOPER_ERROR, _error_result(errors.invalid_run_response(body)), size)


class Invoker:
    """Executes :class:`Job` s, one thread each; ``on_done(job, record)`` after storing."""

    def __init__(self, pool: ContainerPool, store: ActivationStore, *, container_name: Callable[[Job], str],
                 container_env: dict[str, str], notify_activation: Callable[[str, str, str, float], object],
                 publish: Callable[[ActivationRecord, Identity], None], on_done: Callable[[Job], None],
                 max_payload_bytes: int, log_wait_s: float, pool_wait_s: float):
        self.pool = pool
        self.store = store
        self.container_name = container_name
        self.container_env = container_env
        self.notify_activation = notify_activation
        self.publish = publish
        self.on_done = on_done
        self.max_payload_bytes = max_payload_bytes
        self.log_wait_s = log_wait_s
        self.pool_wait_s = pool_wait_s

    def submit(self, job: Job) -> None:
        threading.Thread(target=self._execute, args=(job,), name=f"activation-{job.activation_id[:8]}",
                         daemon=True).start()

    def _execute(self, job: Job) -> None:
        try:
            record = self.execute(job)
        except Exception:  # noqa: BLE001 (an internal failure still ends in a record)
            LOG.exception("activation %s failed inside localwhisk", job.activation_id)
            record = self._record(job, now_ms(), now_ms(), ActivationResponse(
                StatusCode.WHISK_ERROR, _error_result(errors.RESOURCE_PROVISION_ERROR)), [], {"timeout": False})
        try:
            self.store.put(record)
            self.publish(record, job.identity)
        finally:
            self.on_done(job)

    def execute(self, job: Job) -> ActivationRecord:
        action = job.action
        key = (job.identity.namespace, action.path, action.version, action.updated_ms)
        try:
            pooled, cold = self.pool.acquire(key, action.limits.memory_mb, lambda: self.container_name(job),
                                             self.container_env, time.monotonic() + self.pool_wait_s,
                                             network=_truthy(action.annotation("network")))
        except Exception as exc:  # noqa: BLE001 (no container: a whisk internal error, as OpenWhisk)
            LOG.warning("activation %s: no container: %s", job.activation_id, exc)
            t_ms = now_ms()
            return self._record(job, t_ms, t_ms, ActivationResponse(
                StatusCode.WHISK_ERROR, _error_result(errors.RESOURCE_PROVISION_ERROR)), [],
                {"waitTime": t_ms - job.received_ms, "timeout": False})
        container = pooled.container
        extra: dict[str, Any] = {"timeout": False}
        # the notice first (it may take up to its timeout), so that its date precedes the start
        self.notify_activation("activation_start", container.id, job.activation_id, time.time())
        oom_before = container.oom_kills()
        # the record's start and end are those of the calls on the container (OpenWhisk's Interval
        # of /init and /run): what localwhisk does around them is not in the duration
        start_ms = now_ms()
        context = self._context(job, start_ms + action.limits.timeout_ms)
        extra["waitTime"] = start_ms - job.received_ms
        response, end_ms = self._init_and_run(pooled, job, cold, context, extra, start_ms, oom_before)
        self.notify_activation("activation_end", container.id, job.activation_id, end_ms / 1000)
        healthy = response.status_code in (StatusCode.SUCCESS, StatusCode.APPLICATION_ERROR)
        if not healthy:
            self.pool.release(pooled, healthy=False)  # destroyed first: its log streams end
        logs = self._logs(pooled, action, healthy)
        if healthy:
            self.pool.release(pooled, healthy=True)
        return self._record(job, start_ms, end_ms, response, logs, extra)

    def _init_and_run(self, pooled: Pooled, job: Job, cold: bool, context: dict[str, str],
                      extra: dict[str, Any], start_ms: int, oom_before: int | None
                      ) -> tuple[ActivationResponse, int]:
        """``/init`` (cold) then ``/run`` on the container's kept connection; the response and
        when the last call ended; sets ``initTime``/``timeout`` in ``extra``."""
        action = job.action
        container, runtime = pooled.container, pooled.runtime()
        timeout_s = action.limits.timeout_ms / 1000
        if cold:
            init = runtime.post("/init", {"value": self._init_value(action, context)}, timeout_s)
            extra["initTime"] = init.end_ms - start_ms
            if init.outcome is CallOutcome.TIMED_OUT:
                extra["timeout"] = True
                return ActivationResponse(StatusCode.DEVELOPER_ERROR, _error_result(
                    errors.timed_out_activation(action.limits.timeout_ms, init=True))), init.end_ms
            if init.outcome is not CallOutcome.ANSWERED or init.status != 200:
                return self._oom_or(container, oom_before, init_failure(init)), init.end_ms
        run = runtime.post("/run", dict(context, value=self._run_params(job)), timeout_s)
        if run.outcome is CallOutcome.TIMED_OUT:
            extra["timeout"] = True
            return ActivationResponse(StatusCode.DEVELOPER_ERROR, _error_result(
                errors.timed_out_activation(action.limits.timeout_ms, init=False))), run.end_ms
        if run.outcome is CallOutcome.CONNECTION_ERROR:
            return self._oom_or(container, oom_before, ActivationResponse(
                StatusCode.DEVELOPER_ERROR, _error_result(errors.ABNORMAL_RUN))), run.end_ms
        response = run_response(run, self.max_payload_bytes)
        return (response if run.status == 200 else self._oom_or(container, oom_before, response)), run.end_ms

    @staticmethod
    def _oom_or(container, oom_before: int | None, response: ActivationResponse) -> ActivationResponse:
        after = container.oom_kills()
        if oom_before is not None and after is not None and after > oom_before:
            return ActivationResponse(StatusCode.DEVELOPER_ERROR, _error_result(errors.MEMORY_EXHAUSTED))
        return response

    def _context(self, job: Job, deadline_ms: int) -> dict[str, str]:
        action = job.action
        context = {"namespace": job.identity.namespace, "action_name": f"/{action.path}",
                   "action_version": action.version, "activation_id": job.activation_id,
                   "transaction_id": job.transaction_id, "deadline": str(deadline_ms)}
        if _truthy(action.annotation("provide-api-key")):
            context["api_key"] = job.identity.authkey
        return context

    @staticmethod
    def _init_value(action: Action, context: dict[str, str]) -> dict[str, Any]:
        env = {f"__OW_{k.upper()}": v for k, v in context.items()}
        return {"name": action.name, "main": action.main or "main", "code": action.code,
                "binary": action.binary, "env": env}

    @staticmethod
    def _run_params(job: Job) -> dict[str, Any]:
        params = dict(job.action.parameters)
        params.update(job.params)
        return params

    def _logs(self, pooled: Pooled, action: Action, healthy: bool) -> list[str]:
        lines, complete = pooled.container.logs.collect(self.log_wait_s if healthy else min(self.log_wait_s, 0.5))
        limit_bytes = action.limits.logs_mb * 1024 * 1024
        out, total = [], 0
        for line in lines:
            total += len(line.text.encode("utf-8", errors="replace"))
            if total > limit_bytes:
                out.append(_system_line(errors.truncate_logs(limit_bytes)))
                break
            out.append(line.formatted())
        if not complete:
            out.append(_system_line(errors.LOG_FAILURE if healthy else LOG_WARNING_DEVELOPER_ERROR))
        return out

    @staticmethod
    def _record(job: Job, start_ms: int, end_ms: int, response: ActivationResponse, logs: list[str],
                extra: dict[str, Any]) -> ActivationRecord:
        action = job.action
        annotations: list[tuple[str, Any]] = [("path", action.path), ("kind", action.kind),
                                              ("limits", action.limits.to_json())]
        annotations += [(k, extra[k]) for k in ("waitTime", "initTime", "timeout") if k in extra]
        return ActivationRecord(activation_id=job.activation_id, namespace=job.identity.namespace,
                                name=action.name, subject=job.identity.subject, version=action.version,
                                start_ms=start_ms, end_ms=end_ms, response=response, logs=tuple(logs),
                                annotations=tuple(annotations))


def _system_line(text: str) -> str:
    return LogLine(rfc3339_ns(time.time_ns()), "stderr", text).formatted()


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "1"))
