"""The daemons' command-line plumbing (faasload/cli.py): exit codes and how failures are reported."""

from __future__ import annotations

import logging

from faasload import cli
from faasload.errors import Failure
from loader.experiment import ExperimentError


def _raise(exc: BaseException):
    def body() -> int:
        raise exc
    return body


def test_an_unexpected_exception_is_logged_at_error_with_its_traceback(caplog, capsys):
    """Issue 16 item 8: a bug in the field leaves its traceback in the log, not one line."""
    with caplog.at_level(logging.INFO):
        assert cli.run_main(_raise(KeyError("field")), "loader") == cli.EXIT_FAILURE
    (record,) = [r for r in caplog.records if r.name == "loader"]
    assert record.levelno == logging.ERROR and record.exc_info[0] is KeyError
    assert record.getMessage() == "unexpected error: KeyError: 'field'"
    assert capsys.readouterr().err == "loader: error: KeyError: 'field' (an unexpected error: its traceback is in the log)\n"


def test_an_anticipated_failure_is_one_line_without_traceback(caplog, capsys):
    assert issubclass(ExperimentError, Failure)
    with caplog.at_level(logging.DEBUG):
        assert cli.run_main(_raise(ExperimentError("experiment 'x' already exists")), "loader") == cli.EXIT_FAILURE
    assert not [r for r in caplog.records if r.exc_info]
    assert capsys.readouterr().err == "loader: error: experiment 'x' already exists\n"
