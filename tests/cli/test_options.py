"""Options several commands share: --quantize takes decode.quantize's choices, as one line naming them."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_bad_quantize_option_is_a_one_line_error(tiny_run: Path) -> None:
    proc = run_cli("translate", "--model", "runs/tiny", "--quantize", "int4", "hello", cwd=tiny_run)
    assert proc.returncode == 2 and "'int4' is not one of none, int8" in proc.stderr and "Traceback" not in proc.stderr
