"""Per-user OpenWhisk keys: file ``USER`` in ``openwhisk:authkeys`` holds ``uuid:key``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from faasload.private_file import write_private

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class KeyFileError(ValueError):
    """A user has no usable key file; the message names the file."""


@dataclass(frozen=True, slots=True)
class UserKey:
    """A user's credentials: ``uuid:key`` as OpenWhisk's ``wsk property get --auth`` shows it."""

    user: str
    uuid: str
    key: str

    @property
    def auth(self) -> tuple[str, str]:
        """For ``requests``' Basic authentication."""
        return self.uuid, self.key

    def __repr__(self) -> str:  # never print the secret
        return f"UserKey(user={self.user!r}, uuid={self.uuid!r})"


def key_path(authkeys: Path, user: str) -> Path:
    return Path(authkeys) / user


def parse_key(text: str, user: str, source: str) -> UserKey:
    value = text.strip()
    uuid, sep, key = value.partition(":")
    if not sep or not _UUID.fullmatch(uuid) or not key or any(c.isspace() for c in key):
        raise KeyFileError(f"{source}: key file of user {user!r} does not hold 'uuid:key' "
                           f"(a UUID, a colon, then the key, on one line)")
    return UserKey(user, uuid, key)


def load_key(authkeys: Path, user: str) -> UserKey:
    """The key of ``user``; raises :class:`KeyFileError` naming the missing or bad file."""
    path = key_path(authkeys, user)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no key file for user {user!r} in openwhisk:authkeys "
                           f"(create the user and store its 'uuid:key' there; see scripts/create_users.sh)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read the key file of user {user!r}: {exc}") from None
    return parse_key(text, user, str(path))


def store_key(authkeys: Path, user: str, credentials: str) -> Path:
    """Write ``uuid:key`` for ``user`` (mode 0600 from the first byte, directory 0700), after
    checking its shape."""
    parse_key(credentials, user, f"credentials of {user}")
    directory = Path(authkeys)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_path(directory, user)
    write_private(path, (credentials.strip() + "\n").encode("utf-8"))
    return path
