"""The API error type and OpenWhisk's message texts (``Messages`` in ``http/ErrorResponse.scala``)."""

from __future__ import annotations

RESOURCE_DOES_NOT_EXIST = "The requested resource does not exist."
NOT_AUTHORIZED = "The supplied authentication is not authorized to access this resource."
ROUTE_NOT_FOUND = "The requested resource could not be found."
ALREADY_EXISTS = "resource already exists"
EXEC_UNDEFINED = "exec undefined"
ENTITY_NAME_ILLEGAL = "The name of the entity contains illegal characters."
ACTIVATION_ID_ILLEGAL = "The activation id is not valid."
DOCS_WITH_COUNT = "The parameter 'docs' is not permitted with 'count'."
PARAMETERS_NOT_ALLOWED = "Request defines parameters that are not allowed (e.g., reserved properties)."
ABNORMAL_INITIALIZATION = "The action did not initialize and exited unexpectedly."
ABNORMAL_RUN = "The action did not produce a valid response and exited unexpectedly."
MEMORY_EXHAUSTED = "The action exhausted its memory and was aborted."
RESOURCE_PROVISION_ERROR = "Failed to provision resources to run the action."
LOG_FAILURE = "There was an issue while collecting your logs. Data might be missing."


def not_authorized_to_access(resource: str) -> str:
    return f"The supplied authentication is not authorized to access '{resource}'."


def too_many_requests(count: int, allowed: int) -> str:
    return f"Too many requests in the last minute (count: {count}, allowed: {allowed})."


def too_many_concurrent(count: int, allowed: int) -> str:
    return f"Too many concurrent requests in flight (count: {count}, allowed: {allowed})."


def invalid_timeout(max_ms: int) -> str:
    return f"Timeout must be number of milliseconds up to {max_ms}."


def list_limit_out_of_range(collection: str, value: int, maximum: int) -> str:
    return f"The value '{value}' is not in the range of 0 to {maximum} for {collection}."


def list_skip_out_of_range(collection: str, value: int) -> str:
    return f"The value '{value}' is not greater than or equal to 0 for {collection}."


def argument_not_integer(collection: str, value: str) -> str:
    return f"The value '{value}' is not an integer for {collection}."


def bad_epoch(value: str) -> str:
    return f"Parameter is not a valid value for epoch seconds: {value}"


def bad_name_filter(value: str) -> str:
    return f"Parameter may be a 'simple' name or 'package-name/simple' name: {value}"


def timed_out_activation(timeout_ms: int, init: bool) -> str:
    return f"The action exceeded its time limits of {timeout_ms} milliseconds" + (" during initialization." if init else ".")


def invalid_init_response(body: str) -> str:
    return "The action failed during initialization" + (f": {body}" if body else ".")


def invalid_run_response(body: str) -> str:
    return "The action did not produce a valid JSON response" + (f": {body}" if body else ".")


def truncated_response(length: int, maximum: int) -> str:
    return f"The action produced a response that exceeded the allowed length: {length} > {maximum} bytes."


def entity_too_big(field: str, size_bytes: int, limit_bytes: int) -> str:
    """413 text for a request, or a field of it (``parameters``, ``annotations``, ``exec``), over its limit."""
    return f"{field} larger than allowed: {size_bytes} > {limit_bytes} bytes."


def feature_not_implemented(feature: str) -> str:
    """501 text of the OpenWhisk routes localwhisk does not implement (docs/localwhisk.md)."""
    return f"{feature} are not implemented by localwhisk, which serves actions and activations only."


def truncate_logs(limit_bytes: int) -> str:
    return f"Logs were truncated because the total bytes size exceeds the limit of {limit_bytes} bytes."


def unsupported_runtime(kind: str, kinds: list[str]) -> str:
    return (f"The specified runtime '{kind}' is not supported by this platform. "
            f"Valid values are: {', '.join(kinds)}.")


class ApiError(Exception):
    """An error answered as ``{"error": text, "code": <request id>}`` with ``status``."""

    def __init__(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers
