"""HTTP Basic authentication with OpenWhisk's ``uuid:key`` credentials
(docs/openwhisk-contract.md, Authentication).

The secret must be exactly 64 characters (``entity/Secret.scala``); anything else fails
to parse and is answered 401, like an unknown pair.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass

from .users import KEY_LENGTH, Identity, UserStore

REALM_HEADER = ("WWW-Authenticate", 'Basic realm="OpenWhisk secure realm"')
MISSING_TEXT = "The resource requires authentication, which was not supplied with the request"
INVALID_TEXT = "The supplied authentication is invalid"


class AuthStatus(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class AuthResult:
    status: AuthStatus
    identity: Identity | None = None

    @property
    def error_text(self) -> str:
        return MISSING_TEXT if self.status is AuthStatus.MISSING else INVALID_TEXT


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``(uuid, key)`` from an ``Authorization: Basic ...`` value, or None when malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    uuid_text, sep, key = decoded.partition(":")
    if not sep or len(key) != KEY_LENGTH:
        return None
    return uuid_text, key


def authenticate(header: str | None, users: UserStore) -> AuthResult:
    if not header:
        return AuthResult(AuthStatus.MISSING)
    pair = parse_basic(header)
    if pair is None:
        return AuthResult(AuthStatus.INVALID)
    identity = users.identify(*pair)
    if identity is None:
        return AuthResult(AuthStatus.INVALID)
    return AuthResult(AuthStatus.OK, identity)
