"""The ``logging`` configuration section, applied with :func:`logging.config.dictConfig`.

:func:`check` is the section's ``option`` check: the levels and the shape of the parts
users change are refused at load with their key; :func:`apply` names the section for
whatever else ``dictConfig`` refuses.
"""

from __future__ import annotations

import logging.config
from collections.abc import Mapping
from typing import Any

from .config import ConfigError, InvalidValue

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


def apply(user: Mapping[str, Any] | None, source: str = "") -> None:
    """Configure logging from the user's section (merged over the defaults); :class:`ConfigError` naming
    ``source`` and the ``logging`` key when ``dictConfig`` refuses it."""
    try:
        logging.config.dictConfig(merged(user))
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ConfigError(source, "logging", str(exc).strip()) from None


_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")


def check(section: Mapping[str, Any]) -> None:
    """Refuse a level ``logging`` does not know, and a part that is not a mapping, naming the key."""
    for part in ("formatters", "filters", "handlers", "loggers", "root"):
        value = section.get(part)
        if value is not None and not isinstance(value, Mapping):
            raise InvalidValue(f"expected a mapping, got {value!r}", part)
    parts = [("root", section.get("root") or {})]
    for group in ("loggers", "handlers"):
        for name, entry in (section.get(group) or {}).items():
            if not isinstance(entry, Mapping):
                raise InvalidValue(f"expected a mapping, got {entry!r}", f"{group}:{name}")
            parts.append((f"{group}:{name}", entry))
    for key, entry in parts:
        if "level" in entry:
            _check_level(entry["level"], f"{key}:level")


def _check_level(level: Any, key: str) -> None:
    known = logging.getLevelNamesMapping()
    if (isinstance(level, int) and not isinstance(level, bool)) or (isinstance(level, str) and level in known):
        return
    raise InvalidValue(f"expected a logging level ({', '.join(_LEVELS)} or a number), got {level!r}", key)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
