"""Which traces a shard replays: a stable split by user (docs/scale-out.md, The split).

Shard ``I`` of ``N`` (1-based, as ``--shard 2/3``) replays the traces of the users ``u`` with

    int.from_bytes(SHA-256(u as UTF-8)[:8], "big") % N == I - 1

The hash is SHA-256, not Python's ``hash()`` (salted per process): every loader on every
host, in any Python version, computes the same owner for the same user.  All the traces of
one user go to one shard, so a user's invocations keep their order and the user's key is
needed on one host only.  The split balances *users* (a uniform hash: each shard gets
``users / N`` give or take a binomial spread); invocations balance as far as users carry
similar load.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

_SHARD = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]+)\s*$")


class ShardError(ValueError):
    """A shard designation that is not ``I/N`` with 1 <= I <= N."""


@dataclass(frozen=True, slots=True)
class Shard:
    """This loader's part of the experiment: shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ShardError(f"shard {self.index}/{self.count}: expected I/N with 1 <= I <= N")

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owns(self, user: str) -> bool:
        """Whether this shard replays the traces of ``user``."""
        return shard_of(user, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"2/3"`` → ``Shard(2, 3)``; :class:`ShardError` otherwise."""
    match = _SHARD.match(text)
    if not match:
        raise ShardError(f"{text!r} is not I/N (shard I of N, 1-based, e.g. 2/3)")
    return Shard(int(match.group(1)), int(match.group(2)))


def user_hash(user: str) -> int:
    """The first 8 bytes of SHA-256 of the user's name (UTF-8), as a big-endian integer."""
    return int.from_bytes(hashlib.sha256(user.encode("utf-8")).digest()[:8], "big")


def shard_of(user: str, count: int) -> int:
    """The shard (1-based) of ``count`` that replays ``user``'s traces."""
    return user_hash(user) % count + 1


def owned(users: Iterable[str], shard: Shard) -> list[str]:
    """The users of ``users`` that ``shard`` replays, in their order."""
    return [user for user in users if shard.owns(user)]
