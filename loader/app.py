"""The loader daemon's wiring: pick the mode, let it validate or run.

Each mode is a module with ``validate(config, source) -> int`` and
``run(config, source) -> int``: :mod:`loader.injector` (traces from
``injection:tracedir``) and ``loader.generation`` (``generation:enabled``; fake
traces from the ``functions`` table).  Both feed :func:`loader.runner.run_experiment`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from .config import LoaderConfig

#: The module implementing each mode.
MODES = {"injection": "loader.injector", "generation": "loader.generation"}


def mode_of(config: LoaderConfig) -> str:
    return "generation" if config.generation.enabled else "injection"


def mode_module(config: LoaderConfig) -> ModuleType:
    return importlib.import_module(MODES[mode_of(config)])


def validate(config: LoaderConfig, source: str | Path) -> int:
    """Check everything the run needs, invoke nothing; the exit code."""
    return mode_module(config).validate(config, source)


def run(config: LoaderConfig, source: str | Path) -> int:
    """Run the configured mode to its end; the exit code."""
    return mode_module(config).run(config, source)
