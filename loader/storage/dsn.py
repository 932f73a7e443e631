"""Database DSNs shown without their password: in logs, messages and the stored configuration.

A libpq connection string is either ``key=value`` pairs (values maybe single-quoted, with
backslash escapes) or a URI ``postgres[ql]://[user[:password]@][netloc][/db][?params]``; a
password can sit in the key-value pairs, in the URI's user info, or in its ``password=``
parameter.  :func:`mask_dsn` replaces each with ``***`` and keeps the rest as written, so the
server stays identifiable.  :func:`scrub` removes the password from any text (libpq quotes
parts of a DSN it cannot parse in its error messages).
"""

from __future__ import annotations

import re
import urllib.parse

MASK = "***"
_URI = re.compile(r"\A(?P<scheme>postgres(?:ql)?://)(?P<netloc>[^/?#]*)(?P<rest>.*)\Z", re.IGNORECASE | re.DOTALL)
_URI_PARAM = re.compile(r"(?P<key>[?&]password=)(?P<value>[^&#]*)", re.IGNORECASE)
_KEY_VALUE = re.compile(r"(?P<key>(?<![\w.-])password\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'?|[^\s']\S*)",
                        re.IGNORECASE | re.DOTALL)


def _is_uri(dsn: str) -> bool:
    return _URI.match(dsn) is not None


def mask_dsn(dsn: str) -> str:
    """``dsn`` with every password replaced by ``***``."""
    match = _URI.match(dsn)
    if match is None:
        return _KEY_VALUE.sub(lambda m: m.group("key") + MASK, dsn)
    netloc = match.group("netloc")
    at = netloc.rfind("@")
    if at >= 0 and ":" in netloc[:at]:
        netloc = netloc[:at].split(":", 1)[0] + ":" + MASK + netloc[at:]
    rest = _URI_PARAM.sub(lambda m: m.group("key") + MASK, match.group("rest"))
    return match.group("scheme") + netloc + rest


def passwords(dsn: str) -> list[str]:
    """The password texts in ``dsn`` as written and decoded (longest first), to scrub them."""
    found: set[str] = set()
    match = _URI.match(dsn)
    if match is None:
        for m in _KEY_VALUE.finditer(dsn):
            raw = m.group("value")
            found.add(raw)
            if raw.startswith("'"):
                found.add(re.sub(r"\\(.)", r"\1", raw.strip("'")))
    else:
        netloc = match.group("netloc")
        at = netloc.rfind("@")
        if at >= 0 and ":" in netloc[:at]:
            found.add(netloc[:at].split(":", 1)[1])
        found.update(m.group("value") for m in _URI_PARAM.finditer(match.group("rest")))
    found |= {urllib.parse.unquote(text) for text in found}
    pieces = {piece for text in found for piece in text.split() if len(piece) >= 2}
    return sorted((found | pieces) - {""}, key=len, reverse=True)


def scrub(text: str, dsn: str) -> str:
    """``text`` (an error message) without the passwords of ``dsn``."""
    text = text.replace(dsn, mask_dsn(dsn))
    for secret in passwords(dsn):
        text = text.replace(secret, MASK)
    return text
