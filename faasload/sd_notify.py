"""Readiness for systemd's ``Type=notify`` units: ``READY=1`` on ``$NOTIFY_SOCKET``.

The protocol of sd_notify(3) (https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html):
one datagram on the ``AF_UNIX`` socket that ``$NOTIFY_SOCKET`` names (a leading ``@`` means
Linux's abstract namespace). systemd sets the variable only for a unit of ``Type=notify``; units
ordered after it (``After=``) start once it arrived. Elsewhere nothing is sent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify_ready(environ: Mapping[str, str] = os.environ) -> bool:
    """Tell systemd the service is ready; False when no unit waits for it. Raises OSError."""
    address = environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(b"READY=1")
    return True
