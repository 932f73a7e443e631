"""The ``logging`` configuration section, applied with :func:`logging.config.dictConfig`.

Defaults: INFO and above to stderr.  (The daemons' Kafka clients are librdkafka's, whose own log
is limited to critical lines where each client is made, not Python loggers.)  Under systemd,
when stderr is the journal (``$JOURNAL_STREAM`` names it), every line carries
its syslog priority as a ``<N>`` prefix, which journald strips and stores, so that
``journalctl -p warning`` finds the warnings; the timestamp is then left to the journal.

:func:`check` is the section's ``option`` check: the levels and the shape of the parts
users change are refused at load with their key; :func:`apply` names the section for
whatever else ``dictConfig`` refuses.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from collections.abc import Mapping
from typing import Any

from .config import ConfigError, InvalidValue

#: INFO to stderr, so that journald captures it under a systemd unit.
DEFAULT_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "journal": {"()": "faasload.logsetup.JournalFormatter", "format": "%(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "plain"},
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
}


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (2 critical, 3 error, 4 warning, 6 info, 7 debug)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(logging.Formatter):
    """Every line of a record (a traceback too) prefixed with its syslog priority, ``<4>...``."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def stderr_is_journal(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether stderr is the journal's stream: ``$JOURNAL_STREAM`` holds its ``device:inode``.

    systemd sets the variable for a unit whose output goes to the journal; comparing with stderr
    itself keeps a child whose stderr was redirected elsewhere from writing prefixes.
    """
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def merged(user: Mapping[str, Any] | None, *, journal: bool = False) -> dict[str, Any]:
    """The defaults with the user's section merged over them, key by key.

    So ``logging: {root: {level: DEBUG}}`` only switches verbosity. ``journal`` makes the
    default stderr handler write priority-prefixed lines (:class:`JournalFormatter`).
    """
    base = _merge(DEFAULT_LOGGING, {"handlers": {"stderr": {"formatter": "journal"}}}) if journal else DEFAULT_LOGGING
    return _merge(base, user or {})


def apply(user: Mapping[str, Any] | None, source: str = "") -> None:
    """Configure logging from the user's section (merged over the defaults); :class:`ConfigError` naming
    ``source`` and the ``logging`` key when ``dictConfig`` refuses it."""
    try:
        logging.config.dictConfig(merged(user, journal=stderr_is_journal()))
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
