"""faasload.logsetup: defaults, journald priority prefixes when stderr is the
journal's stream (as systemd sets $JOURNAL_STREAM), plain lines otherwise."""

import logging
import os
import subprocess
import sys

from faasload import logsetup

EMIT = """
import logging
from faasload import logsetup
logsetup.apply({})
logging.getLogger("loader.x").warning("late invocations")
logging.getLogger("loader.x").info("progress")
logging.getLogger("loader.y").debug("connecting to broker")
logging.getLogger("loader.y").warning("broker down")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("loader.x").exception("failed")
"""


def _emit(tmp_path, journal_stream):
    """Run EMIT with stderr to a file, and $JOURNAL_STREAM naming that file (True) or another one."""
    out = tmp_path / "stderr"
    other = tmp_path / "other"
    other.write_text("")
    with open(out, "w") as stream:
        st = os.fstat(stream.fileno()) if journal_stream else os.stat(other)
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        subprocess.run([sys.executable, "-c", EMIT], stderr=stream, env=env, check=True, timeout=60)
    return out.read_text().splitlines()


def test_priority_prefixes_when_stderr_is_the_journal(tmp_path):
    lines = _emit(tmp_path, True)
    assert lines[:3] == ["<4>WARNING loader.x: late invocations", "<6>INFO loader.x: progress",
                         "<4>WARNING loader.y: broker down"]
    assert lines[3] == "<3>ERROR loader.x: failed"
    assert lines[4] == "<3>Traceback (most recent call last):"  # every line of the traceback keeps its priority
    assert all(line.startswith("<3>") for line in lines[3:]) and lines[-1] == "<3>ZeroDivisionError: division by zero"


def test_plain_lines_when_stderr_is_not_the_journal(tmp_path):
    lines = _emit(tmp_path, False)
    assert not any(line.startswith("<") for line in lines)
    assert lines[0].endswith(" WARNING loader.x: late invocations") and lines[0][:4].isdigit()  # with a timestamp
    assert not any("connecting to broker" in line for line in lines)


def test_the_section_merges_over_the_defaults():
    assert logsetup.merged({})["root"] == {"level": "INFO", "handlers": ["stderr"]}
    assert logsetup.merged({"loggers": {"loader": {"level": "DEBUG"}}})["loggers"]["loader"] == {"level": "DEBUG"}
    journal = logsetup.merged({"root": {"level": "DEBUG"}}, journal=True)
    assert journal["handlers"]["stderr"]["formatter"] == "journal" and journal["root"]["level"] == "DEBUG"


def test_syslog_priorities():
    assert [logsetup.syslog_priority(level) for level in
            (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)] == [7, 6, 4, 3, 2]
