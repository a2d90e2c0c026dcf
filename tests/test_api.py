"""The Python API: `import seq2seq` stays light (no torch), and seq2seq.train takes a Config, a dict or a YAML path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.api import as_config
from seq2seq.config import Config, ConfigError, replace
from tests.conftest import ONE_THREAD, ROOT

ENV = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT)}


def test_import_seq2seq_is_light_and_train_is_callable_either_way() -> None:
    code = "import sys, seq2seq; assert 'torch' not in sys.modules, 'torch imported'; print(sorted(seq2seq.__all__))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['Translator', '__version__', 'train']"
    # the names resolve on first use (torch is imported by now in this process, as it would be there)
    import seq2seq
    import seq2seq.api
    import seq2seq.decode.translator
    import seq2seq.training.trainer  # noqa: F401

    assert callable(seq2seq.train) and seq2seq.train is seq2seq.api.train
    assert seq2seq.Translator is seq2seq.decode.translator.Translator


def test_api_accepts_a_config_a_dict_or_a_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  hidden_size: 8\n", encoding="utf-8")
    from_path = as_config(path, ["train.lr=0.5"])
    assert (from_path.model.hidden_size, from_path.train.lr) == (8, 0.5)
    assert replace(replace(from_path, "model", hidden_size=Config().model.hidden_size), "train", lr=Config().train.lr) == Config()
    assert as_config({"model": {"hidden_size": 8}}, ["train.lr=0.5"]) == from_path
    assert as_config(from_path) == from_path and isinstance(from_path, Config)
    with pytest.raises(ConfigError, match="hiden_size"):
        as_config({"model": {"hiden_size": 8}})
    with pytest.raises(ConfigError, match="expected a Config"):
        as_config(42)  # type: ignore[arg-type]
