"""Pipfile.lock -> a pip requirements file with every hash, for ``pip install --require-hashes``.

Used by ``scripts/setup.sh`` (standard library only: it runs before anything is installed).

    python3 scripts/lock_requirements.py [--lock Pipfile.lock] [--no-dev]

prints one line per locked package, ``name==version ; markers --hash=sha256:...``, the
``default`` section, then ``develop`` (unless ``--no-dev``). A package locked in both sections
must have the same version in both. Exit status 2 names the lock file and the package when an
entry cannot be installed with hashes (no pinned version, no hashes, a VCS or path entry).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

SECTIONS = ("default", "develop")


class LockError(ValueError):
    """A Pipfile.lock that cannot be turned into hashed requirements (names the file and the entry)."""


def requirement_line(name: str, entry: Any, source: str) -> str:
    """One requirements line for a lock entry, with its markers and every hash."""
    where = f"{source}: {name}"
    if not isinstance(entry, dict):
        raise LockError(f"{where}: expected a mapping, got {entry!r}")
    for unsupported in ("git", "path", "file", "editable"):
        if unsupported in entry:
            raise LockError(f"{where}: a {unsupported!r} entry cannot be installed with --require-hashes")
    version = entry.get("version")
    if not isinstance(version, str) or not version.startswith("=="):
        raise LockError(f"{where}: expected a pinned version '==X', got {version!r}")
    hashes = entry.get("hashes")
    if not isinstance(hashes, list) or not hashes or not all(isinstance(h, str) and ":" in h for h in hashes):
        raise LockError(f"{where}: expected a non-empty list of 'sha256:...' hashes, got {hashes!r}")
    extras = entry.get("extras") or []
    line = name + (f"[{','.join(sorted(extras))}]" if extras else "") + version
    markers = entry.get("markers")
    if markers:
        line += f" ; {markers}"
    return line + "".join(f" --hash={h}" for h in sorted(hashes))


def requirements(lock: dict[str, Any], source: str, *, dev: bool) -> list[str]:
    """The requirements lines of the lock's sections (``develop`` only with ``dev``), sorted by name."""
    chosen: dict[str, tuple[str, str]] = {}  # name -> (section, version)
    lines: dict[str, str] = {}
    for section in SECTIONS[: 2 if dev else 1]:
        packages = lock.get(section, {})
        if not isinstance(packages, dict):
            raise LockError(f"{source}: {section}: expected a mapping of packages")
        for name, entry in packages.items():
            key = name.lower().replace("_", "-")
            line = requirement_line(name, entry, source)
            if key in chosen:
                first_section, first_version = chosen[key]
                if first_version != entry.get("version"):
                    raise LockError(f"{source}: {name}: {first_section} locks {first_version}, "
                                    f"{section} locks {entry.get('version')}")
                continue
            chosen[key] = (section, entry["version"])
            lines[key] = line
    return [lines[key] for key in sorted(lines)]


def load(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LockError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise LockError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(document, dict):
        raise LockError(f"{path}: expected a JSON object")
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lock_requirements.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, default=Path(__file__).resolve().parent.parent / "Pipfile.lock")
    parser.add_argument("--no-dev", dest="dev", action="store_false", help="leave out the develop section")
    args = parser.parse_args(argv)
    try:
        lines = requirements(load(args.lock), str(args.lock), dev=args.dev)
    except LockError as exc:
        print(f"lock_requirements: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
