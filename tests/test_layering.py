"""ARCHITECTURE.md's layering, checked on the source: imports run one way, top to bottom.

Every import counts, the lazy ones inside functions included (they are imports all the same); only those under
`if TYPE_CHECKING:` are left out, because they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seq2seq"

# Read from ARCHITECTURE.md's module table (tests/test_architecture.py checks it lists every module): what needs no
# torch imports no torch (CONVENTIONS: text -> ids, the text side of results, all that translating or serving an
# export runs), and the layers, bottom to top. A module may import from its own layer and the layers below it; within
# a layer of several packages, only from its own package (serve and tools know nothing of each other). The package's
# __init__ is in the base: it imports nothing eagerly, so every module may read __version__ from it.
from tests.test_architecture import module_table  # noqa: E402

TORCH_FREE = [e.module for e in module_table() if e.torch_free]
LAYERS: list[tuple[str, ...]] = [
    tuple(dict.fromkeys(e.module if n == 0 else ".".join(e.module.split(".")[:2]) for e in module_table() if e.layer == n))
    for n in range(max(e.layer for e in module_table()) + 1)
]
BASE = LAYERS[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layer entry a module belongs to: a base module itself, else its package (seq2seq.data.vocab -> seq2seq.data)."""
    if module == "seq2seq.__main__" or module in BASE:
        return module
    return ".".join(module.split(".")[:2])


def layer_of(module: str) -> int:
    u = unit(module)
    return next(i for i, group in enumerate(LAYERS) if u in group)


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported seq2seq module, imported names) for every import that runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "seq2seq" and node.level == 0:
            names = [a.name for a in node.names]
            # `from seq2seq.cli import tools` imports the module seq2seq.cli.tools
            for name in names:
                sub = f"{node.module}.{name}"
                target = sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() else node.module
                found.append((node.lineno, target, [name]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "seq2seq"]
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    for path in SOURCES:
        layer_of(module_name(path))  # StopIteration: a package ARCHITECTURE.md does not place


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_run_one_way_and_never_reach_private_names(path: Path) -> None:
    me = module_name(path)
    for line, target, names in imports(path):
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        assert layer_of(target) <= layer_of(me), f"{where}, a layer above it"
        if layer_of(target) == layer_of(me) and layer_of(me) != 0:
            assert unit(target) == unit(me), f"{where}, another package of the same layer"
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        assert not private, f"{where}: private names {private}"


def test_no_import_cycles_between_modules() -> None:
    graph = {module_name(p): {t for _, t, _ in imports(p)} - {module_name(p)} for p in SOURCES}
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        assert node not in stack, "import cycle: " + " -> ".join(stack[stack.index(node):] + [node])
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, stack + [node])
        done.add(node)

    for m in sorted(graph):
        visit(m, [])


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    """The rule is not vacuous: the model importing the trainer, or data importing the model, is caught."""
    assert layer_of("seq2seq.training.trainer") > layer_of("seq2seq.model.network") > layer_of("seq2seq.data.batch")
    assert layer_of("seq2seq.data.vocab") > layer_of("seq2seq.config")
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from seq2seq.training.trainer import train_step\n")
    assert imports(bad) == [(2, "seq2seq.training.trainer", ["train_step"])]


def torch_imported_by(modules: list[str]) -> bool:
    """Whether importing `modules` in a fresh interpreter imports torch."""
    code = f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    return out.strip() == "True"


def test_what_needs_no_torch_imports_no_torch() -> None:
    pytest.importorskip("onnxruntime")  # an export's sessions need it (the runtime extra)
    assert not torch_imported_by(TORCH_FREE)
    assert torch_imported_by(["seq2seq.data.batch"])  # the check is not vacuous: batches are tensors
