"""The ``logging`` configuration section, applied with :func:`logging.config.dictConfig`."""

from __future__ import annotations

import logging.config
from collections.abc import Mapping
from typing import Any

#: INFO to stderr, so that journald captures it under a systemd unit.
DEFAULT_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "plain"},
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
}


def merged(user: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults with the user's section merged over them, key by key.

    So ``logging: {root: {level: DEBUG}}`` only switches verbosity.
    """
    return _merge(DEFAULT_LOGGING, user or {})


def apply(user: Mapping[str, Any] | None) -> None:
    """Configure logging from the user's section (merged over the defaults)."""
    logging.config.dictConfig(merged(user))


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
