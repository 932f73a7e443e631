"""The one mark of an anticipated failure, shared by the daemons."""

from __future__ import annotations


class Failure(RuntimeError):
    """A failure the code anticipates (a service unreachable, a name taken, a checkpoint that does not fit).

    Its message says everything: ``__main__`` prints it in one line, without a traceback.  Any
    other exception reaching ``__main__`` is unexpected: logged at ERROR with its traceback.
    """
