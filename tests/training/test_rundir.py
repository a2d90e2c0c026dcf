"""The run-directory guard: a new run never overwrites another; --resume needs a last.pt and the same config."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq.config import Config, dump_config, replace
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.files import atomic_write_text
from seq2seq.model.checkpoint import save_checkpoint
from seq2seq.runfiles import RunFiles
from seq2seq.training.rundir import prepare_run_dir
from tests.conftest import fake_state


def run_with(tmp_path: Path, **train: object) -> tuple[RunFiles, Config]:
    return RunFiles(tmp_path / "run"), replace(Config(), "train", **train)


def test_a_new_run_refuses_a_directory_holding_another_run(tmp_path):
    files, cfg = run_with(tmp_path, lr=0.1)
    prepare_run_dir(files, cfg, resume=False, overwrite=False)  # nothing there yet
    files.root.mkdir()
    atomic_write_text(files.config, dump_config(cfg))
    prepare_run_dir(files, cfg, resume=False, overwrite=False)  # same run, killed before its first checkpoint
    prepare_run_dir(files, replace(cfg, "train", epochs=99), resume=False, overwrite=False)  # epochs may change
    # nothing trained yet (build-vocab made the directory): other training settings are welcome, other data not
    prepare_run_dir(files, replace(cfg, "train", lr=0.2), resume=False, overwrite=False)
    with pytest.raises(ConfigError, match=r"vocabularies built with other data settings \(data.min_freq differ"):
        prepare_run_dir(files, replace(cfg, "data", min_freq=3), resume=False, overwrite=False)
    save_checkpoint(files.last, fake_state(3))
    with pytest.raises(ConfigError, match="add --resume to continue it or --overwrite"):
        prepare_run_dir(files, cfg, resume=False, overwrite=False)
    with pytest.raises(ConfigError, match=r"trained with another config \(model.dropout, train.lr differ\)"):
        prepare_run_dir(files, replace(replace(cfg, "train", lr=0.2), "model", dropout=0.5), resume=True, overwrite=False)
    with pytest.raises(ConfigError, match="exclude each other"):
        prepare_run_dir(files, cfg, resume=True, overwrite=True)
    prepare_run_dir(files, cfg, resume=True, overwrite=False)
    assert files.last.exists()
    prepare_run_dir(files, replace(cfg, "train", lr=0.2), resume=False, overwrite=True)
    assert not files.last.exists() and not files.config.exists()


def test_resume_needs_a_last_checkpoint(tmp_path):
    files, cfg = run_with(tmp_path)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        prepare_run_dir(files, cfg, resume=True, overwrite=False)
