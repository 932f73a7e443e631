"""``python -m loader.deploy``: the injector's setup (users, keys, actions), at its historical path.

The commands live in :mod:`loader.injection.setup`.
"""

from __future__ import annotations

import sys

from loader.injection.setup import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
