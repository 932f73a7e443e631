"""faasload.embedded_pg: where a cluster goes when none is configured, and whether its server (an
unprivileged user when we are root) can reach a directory."""

import os
import tempfile
from pathlib import Path

import pytest

from faasload import embedded_pg


def test_default_datadir_is_per_user_or_system_wide_as_root():
    if os.geteuid() == 0:
        assert embedded_pg.default_datadir() == Path("/var/lib/faasload/pgdata")
    else:
        assert embedded_pg.default_datadir() == Path.home() / ".local/state/faasload/pgdata"


@pytest.mark.root
def test_a_private_directory_is_not_reachable_by_the_server_user():
    if os.geteuid() != 0:
        pytest.skip("the server runs as the caller when not root")
    private = Path(tempfile.mkdtemp(dir="/tmp"))  # 0700
    try:
        assert not embedded_pg.service_user_reaches(private / "state" / "pgdata")
        private.chmod(0o755)
        assert embedded_pg.service_user_reaches(private / "state" / "pgdata")  # to be created below
    finally:
        private.rmdir()
