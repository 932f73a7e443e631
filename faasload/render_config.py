"""Render the configuration reference from the schemas: one source of truth.

``python -m faasload.render_config`` rewrites the commented YAML files under
``config/`` and the tables of ``docs/configuration.md`` from the dataclass schemas;
``--check`` only compares and exits 1 when anything differs (the test suite runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import textwrap
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import _type_text, _yaml_text, field_default, render_table

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"

#: (config file name, module, schema class, one-line description)
SCHEMAS = [
    ("loader.yml", "loader.config", "LoaderConfig", "the loader daemon (`python -m loader`)"),
    ("monitor.yml", "monitor.config", "MonitorConfig", "the monitor daemon (`python -m monitor`)"),
    ("localwhisk.yml", "localwhisk.config", "LocalWhiskConfig", "localwhisk (`python -m localwhisk`)"),
]


def available_schemas():
    for filename, module_name, class_name, description in SCHEMAS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        schema = getattr(module, class_name, None)
        if schema is not None:
            yield filename, schema, description


def render_yaml(schema: type, filename: str, description: str) -> str:
    lines = [f"# {filename}: configuration of {description}.",
             "# Generated from the schema by `python -m faasload.render_config`; every key is shown",
             "# at its default. Reference: docs/configuration.md. Paths expand ~ and $VARS (unset: an error).", ""]
    lines += _yaml_lines(schema, 0)
    return "\n".join(lines) + "\n"


def _yaml_lines(schema: type, indent: int) -> list[str]:
    hints = typing.get_type_hints(schema)
    pad = "  " * indent
    out = []
    for field in dataclasses.fields(schema):
        meta = field.metadata
        comment = meta["doc"] + (f" [{meta['unit']}]" if meta.get("unit") else "")
        for line in textwrap.wrap(comment, 96 - len(pad)):
            out.append(f"{pad}# {line}")
        if meta.get("section"):
            out.append(f"{pad}{field.name}:")
            out += _yaml_lines(hints[field.name], indent + 1)
            continue
        default = field_default(field)
        out.append(f"{pad}{field.name}: {_yaml_value(default, field.name, meta)}  # {_type_text(hints[field.name])}")
    return out


def _yaml_value(value: Any, name: str, meta: Mapping[str, Any]) -> str:
    if name == "mode" and isinstance(value, int):
        return "0" + format(value, "o")  # YAML 1.1 octal, as PyYAML reads it
    return _yaml_text(value)


def render_doc_section(filename: str, schema: type) -> str:
    return f"<!-- BEGIN {filename} -->\n{render_table(schema)}\n<!-- END {filename} -->"


def _replace_section(text: str, filename: str, block: str) -> str:
    begin, end = f"<!-- BEGIN {filename} -->", f"<!-- END {filename} -->"
    if begin not in text:
        return text.rstrip("\n") + f"\n\n## `config/{filename}`\n\n{block}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return head + block + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on any difference")
    args = parser.parse_args(argv)
    stale = []
    doc_text = DOC.read_text() if DOC.exists() else "# Configuration\n"
    new_doc = doc_text
    for filename, schema, description in available_schemas():
        yaml_path = ROOT / "config" / filename
        expected = render_yaml(schema, filename, description)
        if not yaml_path.exists() or yaml_path.read_text() != expected:
            stale.append(str(yaml_path.relative_to(ROOT)))
            if not args.check:
                yaml_path.write_text(expected)
        new_doc = _replace_section(new_doc, filename, render_doc_section(filename, schema))
    if new_doc != doc_text:
        stale.append(str(DOC.relative_to(ROOT)))
        if not args.check:
            DOC.write_text(new_doc)
    if stale and args.check:
        print("out of date with the schemas (run `python -m faasload.render_config`): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
