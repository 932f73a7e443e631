"""``python -m loader.functions`` and ``from loader import functions``: the manifest helper's historical name.

The helper lives in :mod:`loader.manifest`; this module re-exports it unchanged.
"""

from __future__ import annotations

import sys

from loader.manifest import (
    INPUT_KINDS,
    STORAGE_PARAMETERS,
    ManifestError,
    ParameterSpec,
    SpecKind,
    load_to_database,
    main,
    parameter_specs,
    read_functions,
)

__all__ = ["INPUT_KINDS", "STORAGE_PARAMETERS", "ManifestError", "ParameterSpec", "SpecKind", "load_to_database",
           "main", "parameter_specs", "read_functions"]

if __name__ == "__main__":
    sys.exit(main())
