"""Shared tokens kept in files that only their owner can read (mode 0600).

The monitor's TCP measurement socket and its clients (the loaders) share one token
(docs/scale-out.md, Monitors over TCP).  :func:`read_token` refuses a file that its group or
others could read, and never puts the token in a message.  :func:`create_token_file` writes a
new random token with mode 0600 from the first byte (``python -m faasload.token_file PATH``).
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from pathlib import Path

#: Shortest accepted token (``create_token_file`` writes 43 characters, 256 random bits).
MIN_TOKEN_CHARS = 16


class TokenFileError(ValueError):
    """A token file that is missing, readable by others, or does not hold one token."""


def read_token(path: str | os.PathLike) -> str:
    """The token in ``path``; :class:`TokenFileError` naming the file and what is wrong."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise TokenFileError(f"{path}: no such token file (create one with python -m faasload.token_file {path})") from None
    except OSError as exc:
        raise TokenFileError(f"{path}: cannot read the token file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise TokenFileError(f"{path}: the token file is not a regular file")
    if st.st_mode & 0o077:
        raise TokenFileError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets other users read the token "
                             f"(chmod 600 {path})")
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"{path}: cannot read the token file: {exc}") from None
    if len(text) < MIN_TOKEN_CHARS or any(not c.isprintable() or c.isspace() for c in text):
        raise TokenFileError(f"{path}: must hold one token of at least {MIN_TOKEN_CHARS} printable ASCII "
                             f"characters without spaces, on one line")
    return text


def create_token_file(path: str | os.PathLike) -> Path:
    """Write a new random token to ``path`` (which must not exist), mode 0600 from the first byte."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as stream:
        stream.write(secrets.token_urlsafe(32) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m faasload.token_file PATH  (writes a new token, mode 0600; PATH must not exist)",
              file=sys.stderr)
        return 2
    try:
        print(f"token written to {create_token_file(args[0])} (mode 0600); copy it to every loader and monitor host")
    except FileExistsError:
        print(f"{args[0]}: exists; remove it first to write a new token", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
