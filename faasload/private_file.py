"""Files holding secrets (keys, credentials): private to their owner from the first byte.

:func:`write_private` creates a temporary file next to the target with ``os.open`` and mode
0600 (``O_EXCL``, ``O_NOFOLLOW``: never an existing file or a planted symlink), writes and
syncs it, then renames it over the target.  So there is no moment at which the secret sits in
a file that another user could open, whatever the umask, and readers see the old content or
the new one, never a part.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_MODE = 0o600
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, as a 0600 file of the caller."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)  # left by a crashed writer of this pid number
    fd = os.open(tmp, _FLAGS, PRIVATE_MODE)
    try:
        try:
            os.fchmod(fd, PRIVATE_MODE)  # exactly 0600, even under a umask that removes owner bits
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
