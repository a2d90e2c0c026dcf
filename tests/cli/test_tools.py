"""The commands of cli/tools.py (info, serve, bench, preprocess, average, plot) as a user runs them; `preprocess` here,
the others beside their modules (tests/tools/, tests/serve/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.data.test_shards import write_corpus


def test_preprocess_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.cli.app import main

    data = write_corpus(tmp_path, "parallel")
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  train: {data['train']}\n  valid: {data['valid']}\n  src_lang: en\n  tgt_lang: de\n  max_len: 8\n")
    monkeypatch.setattr(sys, "argv", ["seq2seq", "preprocess", "-c", str(config), "-s", f"train.run_dir={tmp_path / 'run'}", "-q", "-j", "1"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    assert "10 examples of 13 pairs" in capsys.readouterr().err
    assert (tmp_path / "run" / "bin" / "train.json").exists()
