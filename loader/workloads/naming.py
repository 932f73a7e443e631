"""Names of the output: OpenWhisk users, calibrated actions and trace files (docs/workloads.md).

A trace file is ``USER-ACTION-FUNCTION``: the three fields may not contain ``-``
(docs/injection_traces.md), and OpenWhisk wants subject names of at least 5 characters.
Names here use only ``[A-Za-z0-9_]``.

* An identity that is a hex hash (Azure's SHA-256 of owners, apps and functions) becomes a
  letter (``o`` owner, ``a`` app, ``f`` function) and its first 12 hex digits; when two
  hashes of the whole source share those, both get more digits.  Names depend only on
  the source, so they do not change with ``--sample``, ``--minutes`` or ``--seed``.
* Any other identity (FaaSProfiler and synthetic names) is kept as written, and must be
  valid.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

from .records import SourceId, TraceFunction, WorkloadError

HASH = re.compile(r"[0-9a-fA-F]{32,}")
NAME = re.compile(r"[A-Za-z0-9_]+")
MIN_USER_LENGTH = 5
SHORT_HEX = 12
PREFIXES = {"owner": "o", "app": "a", "function": "f"}


class UsersBy(enum.StrEnum):
    """Which source identity becomes one OpenWhisk user (``--users``)."""

    OWNER = "owner"
    APP = "app"
    FUNCTION = "function"


def short_hashes(hashes: Iterable[str], prefix: str) -> dict[str, str]:
    """``prefix`` + the first 12 hex digits, more for hashes that share them."""
    unique = sorted(set(hashes))
    names: dict[str, str] = {}
    width = SHORT_HEX
    pending = unique
    while pending:
        groups: dict[str, list[str]] = {}
        for value in pending:
            groups.setdefault(value[:width].lower(), []).append(value)
        pending = []
        for short, members in groups.items():
            if len(members) == 1 or width >= len(members[0]):
                for member in members:
                    names[member] = prefix + (short if len(members) == 1 else member.lower())
            else:
                pending.extend(members)
        width += 4
    return names


def check_name(name: str, where: str, *, minimum: int = 1) -> str:
    if not NAME.fullmatch(name):
        raise WorkloadError(where, f"name {name!r} may only hold letters, digits and '_' "
                                   f"(OpenWhisk names; '-' separates the fields of a trace file name)")
    if len(name) < minimum:
        raise WorkloadError(where, f"name {name!r} is shorter than {minimum} characters (OpenWhisk's minimum "
                                   f"for a user)")
    return name


class Namer:
    """Stable short names for every identity of a source."""

    def __init__(self, functions: Iterable[TraceFunction]):
        functions = list(functions)
        self._short: dict[str, dict[str, str]] = {}
        for field, prefix in PREFIXES.items():
            values = [getattr(f.source, field) for f in functions]
            hashes = [v for v in values if HASH.fullmatch(v)]
            self._short[field] = short_hashes(hashes, prefix)

    def short(self, field: str, value: str, where: str, *, minimum: int = 1) -> str:
        if HASH.fullmatch(value):
            return self._short[field][value]
        return check_name(value, where, minimum=minimum)

    def user(self, function: TraceFunction, users_by: UsersBy) -> str:
        field = users_by.value
        return self.short(field, getattr(function.source, field), f"{function.where} ({field} as user)",
                          minimum=MIN_USER_LENGTH)

    def function(self, source: SourceId, where: str) -> str:
        return self.short("function", source.function, where)
