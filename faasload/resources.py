"""Where FaaSLoad's example files are, whether it runs from a checkout or an installed wheel.

* From the repository (a checkout, or an editable install such as ``scripts/setup.sh`` makes):
  the files under the repository root (``config/loader.yml``, ``actions/manifest.yml``, ...).
* From a wheel (``pip install .``): the example configuration is the copy the build put in
  ``faasload/examples/config/`` (setup.py); the actions and the demo traces are package data of
  the ``actions`` and ``demo`` packages.

Every path is absolute, so nothing depends on the caller's working directory.

``python -m faasload.resources`` lists them; ``python -m faasload.resources NAME`` prints the
path of one (e.g. ``cp "$(python -m faasload.resources config/loader.yml)" my-loader.yml``).
"""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
#: The repository root when this module runs from a checkout (None in an installed wheel).
CHECKOUT: Path | None = _PACKAGE_DIR.parent if (_PACKAGE_DIR.parent / "pyproject.toml").is_file() else None


def example_config(filename: str) -> Path:
    """The example configuration ``config/FILENAME`` (``loader.yml``, ``monitor.yml``, ``localwhisk.yml``)."""
    if CHECKOUT is not None:
        return CHECKOUT / "config" / filename
    return _PACKAGE_DIR / "examples" / "config" / filename


def example_actions_manifest() -> Path:
    """The wskdeploy manifest of the example actions (``actions/manifest.yml``)."""
    return _PACKAGE_DIR.parent / "actions" / "manifest.yml"


def demo_traces() -> Path:
    """The demo's bundled injection traces (``demo/traces``)."""
    return _PACKAGE_DIR.parent / "demo" / "traces"


def examples() -> dict[str, Path]:
    """Every example file by its name in the repository."""
    named = {f"config/{name}": example_config(name) for name in ("loader.yml", "monitor.yml", "localwhisk.yml")}
    return {**named, "actions/manifest.yml": example_actions_manifest(), "demo/traces": demo_traces()}


def main(argv: list[str]) -> int:
    known = examples()
    if not argv:
        width = max(map(len, known))
        for name, path in known.items():
            print(f"{name:{width}}  {path}")
        return 0
    if len(argv) == 1 and argv[0] in known:
        print(known[argv[0]])
        return 0
    print(f"usage: python -m faasload.resources [NAME] (NAME: {', '.join(known)})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
