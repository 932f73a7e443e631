"""faasload.sd_notify: READY=1 reaches a real datagram socket named by $NOTIFY_SOCKET (a path or
an abstract name); without the variable nothing is sent."""

import os
import socket

import pytest

from faasload import sd_notify


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_reaches_the_socket(tmp_path, abstract):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        if abstract:
            name = f"faasload-test-notify-{os.getpid()}"
            receiver.bind("\0" + name)
            variable = "@" + name
        else:
            variable = str(tmp_path / "notify")
            receiver.bind(variable)
        receiver.settimeout(5)
        assert sd_notify.notify_ready({"NOTIFY_SOCKET": variable}) is True
        assert receiver.recv(64) == b"READY=1"


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "relative"}])
def test_nothing_sent_outside_a_notify_unit(environ):
    assert sd_notify.notify_ready(environ) is False


def test_a_socket_that_is_gone_raises(tmp_path):
    with pytest.raises(OSError):
        sd_notify.notify_ready({"NOTIFY_SOCKET": str(tmp_path / "gone")})
