"""The README's command table and every command's --help are true to the command line itself."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer

from seq2seq.cli.app import app
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
ROOT_COMMAND = typer.main.get_command(app)


def commands() -> dict[str, Any]:
    """Every leaf command (a click Command; typer vendors its own click) by its full name ('train', 'plot curves', ...)."""
    out: dict[str, Any] = {}

    def walk(cmd: Any, prefix: str) -> None:
        if hasattr(cmd, "commands"):  # a group
            for name, sub in cmd.commands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            out[prefix] = cmd

    walk(ROOT_COMMAND, "")
    return out


def readme_row(name: str) -> str:
    rows = [line for line in README.splitlines() if line.startswith(f"| `seq2seq {name}")]
    assert len(rows) == 1, f"README's command table has {len(rows)} rows for `seq2seq {name}`"
    return rows[0]


@pytest.mark.parametrize("name", sorted(commands()))
def test_readme_table_names_every_option_of_every_command(name: str) -> None:
    row = re.split(r"(?<!\\)\|", readme_row(name))[1]  # the command column (a `\|` inside it is not a column break)
    for param in commands()[name].params:
        if param.param_type_name == "option" and param.name != "help":
            long = max(param.opts, key=len)
            assert re.search(rf"{re.escape(long)}(?![\w-])", row), f"README's row for `seq2seq {name}` lacks {long}"


@pytest.mark.parametrize("name", sorted(commands()))
def test_help_shows_no_python_type_names(name: str) -> None:
    """Metavars say what to type (FILE, N, RUN_DIR|FILE.pt), never <str>, <list[str]> or <int range>."""
    cmd = commands()[name]
    text = cmd.get_help(cmd.context_class(cmd, info_name=name))
    assert not re.search(r"<(str|int|float|path|list\[str\]|int range|float range)>", text), text


def test_log_lines_name_no_source_files() -> None:
    """What the log says is for users: it names their files and runs, never a module of ours (`model/network.py`)."""
    import ast

    for path in (ROOT / "seq2seq").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("info", "warning", "error"):
                for arg in node.args:
                    for const in ast.walk(arg):
                        if isinstance(const, ast.Constant) and isinstance(const.value, str):
                            assert not re.search(r"\w\.py\b", const.value), f"{path.name}:{node.lineno} logs {const.value!r}"


def test_info_counts_epochs_in_words() -> None:
    from seq2seq.tools.info import plural

    assert [plural(n, "full epoch") for n in (0, 1, 2, None)] == ["0 full epochs", "1 full epoch", "2 full epochs", "? full epochs"]
