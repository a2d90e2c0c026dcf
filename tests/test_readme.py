"""What the README and the docs promise a new user: the Python example runs as written (twice: overwrite=True),
and docs/config-reference.md is the config's dataclasses, every key."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

from seq2seq.config import SECTIONS
from tests.conftest import ONE_THREAD, ROOT, toy_pairs, write_corpus

ENV = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT)}


def test_readme_python_api_example_runs_as_written_twice(tmp_path: Path) -> None:
    """The README's Python example, run where the quick start ran (runs/demo exists) and then again.

    As written, in a fresh interpreter, with configs/demo.yaml itself; twice in that interpreter, as a notebook
    cell run twice (the second run finds runs/demo-api holding the first one's model). Only data/toy holds 3,400
    of its 12,000 training pairs: the whole corpus would cost a minute for the same proof, and fewer than 64 x 51
    would give the one epoch fewer updates than the demo's 50 warmup steps, which its schedule refuses."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "overwrite=True" in code and 'configs/demo.yaml' in code
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    for split, n in (("train", 3400), ("val", 20), ("test", 20)):
        write_corpus(tmp_path / "data" / "toy", split, toy_pairs(split, n))
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "best.pt").write_bytes(b"the quick start's model")
    (tmp_path / "example.py").write_text(code + "\nprint(repr(t.translate(['I love you'])[0]))\n", encoding="utf-8")
    twice = "example = open('example.py').read()\nexec(example, {})\nexec(example, {})\n"
    proc = subprocess.run([sys.executable, "-c", twice], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    outputs = proc.stdout.splitlines()
    assert len(outputs) == 2 and all(o.startswith("'") for o in outputs), proc.stdout
    assert (tmp_path / "runs" / "demo-api" / "best.pt").exists()
    assert (tmp_path / "runs" / "demo" / "best.pt").read_bytes() == b"the quick start's model"


def test_docs_config_reference_matches_the_dataclasses() -> None:
    script = runpy.run_path(str(ROOT / "scripts" / "config_reference.py"), run_name="config_reference")
    generated = script["render"]()
    reference = (ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert script["readme_section"](reference).strip() == generated.strip(), (
        "docs/config-reference.md is stale: python scripts/config_reference.py --write docs/config-reference.md"
    )
    for name, cls in SECTIONS.items():
        for f in cls.__dataclass_fields__.values():
            assert f"| `{name}.{f.name}` |" in generated
