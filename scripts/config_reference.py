#!/usr/bin/env python3
"""Print the config reference (every key, its default, its help and its allowed values) as Markdown.

Generated from the dataclasses in seq2seq/config.py, so docs/config-reference.md never drifts from the code:

    python scripts/config_reference.py                  # print the tables
    python scripts/config_reference.py --write docs/config-reference.md   # replace the section between the markers
    python scripts/config_reference.py --check docs/config-reference.md   # exit 1 when the section is stale
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seq2seq.config import SECTIONS  # noqa: E402

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def _default(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def _markdown(text: str) -> str:
    """Escape what Markdown would eat outside `code spans`: `|` ends a table cell, `<TAB>` reads as an HTML tag."""
    pieces = text.split("`")
    for i in range(0, len(pieces), 2):
        pieces[i] = pieces[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(pieces).replace("|", "\\|")


def _allowed(meta: dict[str, Any]) -> str:
    parts = []
    if "choices" in meta:
        parts.append("one of " + ", ".join(f"`{c}`" for c in meta["choices"]))
    if "min" in meta:
        parts.append(f"≥ {meta['min']}")
    if "min_excl" in meta:
        parts.append(f"> {meta['min_excl']}")
    if "max" in meta:
        parts.append(f"≤ {meta['max']}")
    if "max_excl" in meta:
        parts.append(f"< {meta['max_excl']}")
    return "; ".join(parts)


def render() -> str:
    """The Markdown tables, one per config section."""
    out = [
        "Every key of a config file, with its default. Set them in the YAML file or with "
        "`--set section.key=value`; a key not listed here is an error.",
    ]
    for name, cls in SECTIONS.items():
        out += ["", f"### `{name}`", "", "| key | default | allowed | description |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            help_text = _markdown(str(f.metadata.get("help", "")))
            out.append(f"| `{name}.{f.name}` | {_default(default)} | {_allowed(dict(f.metadata))} | {help_text} |")
    return "\n".join(out) + "\n"


def readme_section(text: str) -> str:
    """The text between the markers (without them)."""
    if START not in text or END not in text:
        raise ValueError(f"the file lacks the markers {START} and {END}")
    return text.split(START, 1)[1].split(END, 1)[0]


def replace_section(text: str, body: str) -> str:
    head, rest = text.split(START, 1)
    return f"{head}{START}\n{body}{END}{rest.split(END, 1)[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="README", help="replace the section between the markers in README")
    group.add_argument("--check", type=Path, metavar="README", help="exit 1 if the section in README is not up to date")
    args = parser.parse_args()
    body = render()
    if args.write is None and args.check is None:
        sys.stdout.write(body)
        return 0
    path = args.write or args.check
    text = path.read_text(encoding="utf-8")
    if args.check is not None:
        if readme_section(text).strip() != body.strip():
            print(f"{path}: config reference is stale; run: python scripts/config_reference.py --write {path}", file=sys.stderr)
            return 1
        return 0
    path.write_text(replace_section(text, body), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
