"""Where `seq2seq export` writes: the output's missing parent directories are made, as its --help says (issue 32:
the README's `--output exports/demo` failed in a fresh clone); an ancestor that is a file is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from seq2seq.model.export_format import MANIFEST
from tests.conftest import run_cli


def test_export_makes_the_parent_directories(export_run: Path, tmp_path: Path) -> None:
    proc = run_cli("export", "--model", str(export_run), "--output", "exports/nested/demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "exports" / "nested" / "demo" / MANIFEST).read_text(encoding="utf-8"))["quantize"] == "none"
    assert "ONNX opset 17, fp32 weights, " in proc.stderr  # not "opset 17, none"
    assert not list((tmp_path / "exports" / "nested").glob(".*.tmp"))


def test_export_under_a_file_is_one_line(export_run: Path, tmp_path: Path) -> None:
    (tmp_path / "exports").write_text("not a directory\n", encoding="utf-8")
    proc = run_cli("export", "--model", str(export_run), "--output", "exports/demo", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: --output exports/demo: {tmp_path / 'exports'} is a file, expected a directory"]
    assert (tmp_path / "exports").read_text(encoding="utf-8") == "not a directory\n"
