"""The package layout's rules (docs/architecture.md), checked on the imports of the source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE|ALTER TABLE)\b")


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_only_storage_runs_sql():
    offenders = []
    for path in _modules("loader"):
        if path.parent.name == "storage":
            continue
        if any(name == "psycopg2" or name.startswith("psycopg2.") for name in _imports(path)):
            offenders.append(f"{path.relative_to(ROOT)} imports psycopg2")
        offenders += [f"{path.relative_to(ROOT)}: {s[:60]!r}" for s in _strings(path) if _SQL.search(s)]
    assert not offenders


def test_loader_imports_nothing_from_the_monitor_daemon():
    offenders = [str(p.relative_to(ROOT)) for p in _modules("loader")
                 if any(name == "monitor" or name.startswith("monitor.") for name in _imports(p))]
    assert not offenders


def test_generation_does_not_import_injection():
    offenders = [str(p.relative_to(ROOT)) for p in _modules("loader/generation")
                 if any(name.startswith("loader.injection") for name in _imports(p))]
    assert not offenders


def test_nothing_refers_to_files_outside_the_repository():
    pattern = re.compile(r"\.\./shared|CONTRACTS?\.md|ENVIRONMENT\.md|STYLE\.md|DESIGN\.md|RUNTIME\.md|USER_EVENTS\.md")
    offenders = []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".md", ".sh", ".yml", ".service") or not path.is_file():
            continue
        if {".git", ".venv", ".state", "__pycache__"} & set(path.relative_to(ROOT).parts) or path == Path(__file__):
            continue
        offenders += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
                      if pattern.search(line)]
    assert not offenders
