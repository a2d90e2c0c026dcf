"""ARCHITECTURE.md cannot drift from the code (issue 33 §5): its module table lists every module and only modules that
exist, each in the layer tests/test_layering.py enforces and with the torch-freedom tests/test_layering.py proves;
every `package/module.name` its flows and lists cite exists; each "(N files)" counts the files of the flow below it;
each "`X` never imports `Y`" holds, lazy imports included. What the map says that code cannot (why) stays prose."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import NamedTuple

from tests.conftest import ROOT

MAP = ROOT / "ARCHITECTURE.md"
PACKAGE = ROOT / "seq2seq"
NUMBERS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}
ROW = re.compile(r"^\| (\d) \| `([\w/]+)` \| (.+?) \| (no torch|) \|$")


class Entry(NamedTuple):
    layer: int
    module: str  # dotted: seq2seq.data.vocab; the package itself: seq2seq
    job: str
    torch_free: bool


def dotted(name: str) -> str:
    """`data/vocab` -> seq2seq.data.vocab; `__init__` -> seq2seq; `config` -> seq2seq.config."""
    return "seq2seq" if name == "__init__" else "seq2seq." + name.replace("/", ".")


def module_table(text: str | None = None) -> list[Entry]:
    """The rows of ARCHITECTURE.md's module table: | layer | `module` | its job | no torch |."""
    text = MAP.read_text(encoding="utf-8") if text is None else text
    rows = [ROW.match(line) for line in text.splitlines() if line.startswith("| ") and line[2:3].isdigit()]
    assert all(rows), [line for line in text.splitlines() if line.startswith("| ") and line[2:3].isdigit() and not ROW.match(line)]
    return [Entry(int(m[1]), dotted(m[2]), m[3], m[4] == "no torch") for m in rows if m]


def source_modules() -> set[str]:
    """Every module of the package but the subpackages' __init__ (each only a docstring: a package is its modules)."""
    out = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 2:
            continue
        out.add(".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts))
    return out


def test_every_module_is_listed_once_and_every_listed_module_exists() -> None:
    listed = [e.module for e in module_table()]
    assert len(listed) == len(set(listed)), sorted({m for m in listed if listed.count(m) > 1})
    assert sorted(source_modules() - set(listed)) == [], "modules ARCHITECTURE.md's table does not list"
    assert sorted(set(listed) - source_modules()) == [], "modules ARCHITECTURE.md's table lists that do not exist"


def test_subpackage_inits_hold_only_their_docstring() -> None:
    """What the table leaves out holds nothing: a subpackage's __init__ is its one-line description."""
    for path in PACKAGE.glob("*/__init__.py"):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), path


def test_a_package_sits_in_one_layer() -> None:
    layers: dict[str, set[int]] = {}
    for e in module_table():
        unit = e.module if e.layer == 0 else ".".join(e.module.split(".")[:2])
        layers.setdefault(unit, set()).add(e.layer)
    assert {u: ls for u, ls in layers.items() if len(ls) > 1} == {}


def defines(module: str, name: str) -> bool:
    """Does `module` define `name` (a function, class, method, or assigned name) anywhere?"""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


CITED = re.compile(r"(?<![\w/.-])((?:cli|serve|tools|training|decode|model|data)/\w+)(?:\.(\w+))?")


def test_every_module_and_name_the_map_cites_exists() -> None:
    text = MAP.read_text(encoding="utf-8")
    missing = []
    for module, name in CITED.findall(text):
        m = dotted(module)
        if m not in source_modules():
            missing.append(module)
        elif name and name not in ("py", "md") and not defines(m, name):
            missing.append(f"{module}.{name}")
    assert sorted(set(missing)) == []


def test_each_file_count_counts_the_files_of_its_flow() -> None:
    text = MAP.read_text(encoding="utf-8")
    claims = list(re.finditer(r"\((\w+) files\):\n\n```\n(.*?)```", text, re.S))
    assert claims, "ARCHITECTURE.md makes no '(N files)' claim above a flow"
    for claim in claims:
        said, flow = claim[1], claim[2]
        files = {module for module, _ in CITED.findall(flow)}
        assert NUMBERS.get(said, said) == len(files), f"'({said} files)' above a flow of {len(files)}: {sorted(files)}"


def imported(module: str) -> set[str]:
    """Every module `module` imports, seq2seq's and others', lazy imports included (TYPE_CHECKING ones left out)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_each_never_imports_claim_holds() -> None:
    text = MAP.read_text(encoding="utf-8")
    claims = re.findall(r"`([\w/]+)` never imports `([\w/.]+)`", text)
    assert claims, "ARCHITECTURE.md makes no 'never imports' claim"
    for who, what in claims:
        modules = [e.module for e in module_table() if e.module == dotted(who) or e.module.startswith(dotted(who) + ".")]
        assert modules, f"'{who}' names no module of the table"
        target = what if "/" not in what and what not in ("config", "metric") else dotted(what)
        for m in modules:
            hits = {i for i in imported(m) if i == target or i.startswith(target + ".")}
            assert not hits, f"ARCHITECTURE.md: `{who}` never imports `{what}`, but {m} imports {sorted(hits)}"


def test_the_checks_catch_drift() -> None:
    """Not vacuous: a row for a module that is gone, a bad row and a wrong count are all caught."""
    rows = module_table("| 3 | `decode/gone` | nothing | no torch |\n| 1 | `data/vocab` | ids | no torch |\n")
    assert {e.module for e in rows} - source_modules() == {"seq2seq.decode.gone"}
    try:
        module_table("| 3 | decode/search without backticks | x | |\n")
    except AssertionError:
        pass
    else:
        raise AssertionError("a malformed row passed")
    assert not defines("seq2seq.decode.search", "no_such_function") and defines("seq2seq.decode.search", "decode")
    assert "torch" in imported("seq2seq.model.network")
