"""scripts/download_wikipron.sh as a new user meets it (issue 32): it finds the seq2seq of the quick start's venv
without being told, and a failed download is one line that says how to give the file by hand, not a sha256sum
error about a missing file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "download_wikipron.sh"
WIKIPRON = ROOT.parent / "shared" / "data" / "wikipron" / "deu_latn_broad_filtered.tsv"
BARE_PATH = "/usr/bin:/bin"


def _fake(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def _run(script: Path, out: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("SEQ2SEQ", "WIKIPRON_TSV", "VIRTUAL_ENV")}
    return subprocess.run(["bash", str(script), str(out)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**base, "PATH": BARE_PATH, **env})


def _in_a_checkout(tmp_path: Path) -> Path:
    """The script copied into a checkout of its own (tmp_path/scripts/), so its .venv is one the test makes."""
    script = tmp_path / "checkout" / "scripts" / SCRIPT.name
    script.parent.mkdir(parents=True)
    shutil.copy(SCRIPT, script)
    return script


@pytest.mark.skipif(shutil.which("seq2seq", path=BARE_PATH) is not None, reason="a seq2seq command is installed system-wide")
def test_no_seq2seq_is_one_line_before_anything_is_downloaded(tmp_path: Path) -> None:
    proc = _run(_in_a_checkout(tmp_path), tmp_path / "out", tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: no seq2seq command: not on the PATH and no {tmp_path / 'checkout'}/.venv/bin/seq2seq "
        "(run the README's quick start, or set SEQ2SEQ=/path/to/seq2seq)"
    ]
    assert not (tmp_path / "out").exists()


def test_a_failed_download_says_so_and_how_to_give_the_file(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    _fake(fake_bin / "curl", "echo 'curl: (6) Could not resolve host: github.com' >&2; exit 6")
    proc = _run(SCRIPT, tmp_path / "out", tmp_path, PATH=f"{fake_bin}:{BARE_PATH}", SEQ2SEQ="/bin/true")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not download https://github.com/CUNY-CL/wikipron/"), proc.stderr
    assert "WIKIPRON_TSV=/path/to/deu_latn_broad_filtered.tsv" in lines[0] and "sha256sum" not in proc.stderr
    assert list((tmp_path / "out").iterdir()) == []  # no partial file left behind


def test_a_missing_wikipron_tsv_is_one_line(tmp_path: Path) -> None:
    proc = _run(SCRIPT, tmp_path / "out", tmp_path, SEQ2SEQ="/bin/true", WIKIPRON_TSV=str(tmp_path / "nope.tsv"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: WIKIPRON_TSV={tmp_path / 'nope.tsv'}: no such file (or it is empty)"]


@pytest.mark.skipif(not WIKIPRON.is_file(), reason=f"WikiPron's German list is not at {WIKIPRON}")
def test_the_split_runs_the_checkouts_venv_seq2seq(tmp_path: Path) -> None:
    script = _in_a_checkout(tmp_path)
    called = tmp_path / "called.txt"
    _fake(tmp_path / "checkout" / ".venv" / "bin" / "seq2seq", f'echo "$@" > {called}')
    proc = _run(script, tmp_path / "out", tmp_path, WIKIPRON_TSV=str(WIKIPRON))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert called.read_text(encoding="utf-8").split() == [
        "split", str(out / WIKIPRON.name), "--valid", "2000", "--test", "4000", "--seed", "1", "--out", str(out)]
