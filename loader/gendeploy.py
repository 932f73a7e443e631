"""``python -m loader.gendeploy``: the generator's setup (users, keys, actions), at its historical path.

The commands live in :mod:`loader.generation.setup`.
"""

from __future__ import annotations

import sys

from loader.generation.setup import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
