"""Files that cannot be lost: a write that fails (disk full, a signal before the rename) leaves the previous file
intact and no temporary file behind; atomic files get the usual permissions."""

from __future__ import annotations

import errno
import os

import pytest

import seq2seq.files as files_module
from seq2seq.config import Config, dump_config, replace
from seq2seq.data.vocab import SPECIALS, Vocab
from seq2seq.files import atomic_write_text
from seq2seq.model.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import fake_state


def fail_fsync(fd: int) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def interrupt_replace(src: str, dst: str) -> None:
    raise KeyboardInterrupt  # a signal arriving between the write and the rename


@pytest.mark.parametrize("failure", [("fsync", fail_fsync), ("replace", interrupt_replace)], ids=["disk-full", "signal"])
@pytest.mark.parametrize("kind", ["checkpoint", "vocabulary", "config"])
def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch, kind, failure):
    path = tmp_path / {"checkpoint": "last.pt", "vocabulary": "src_vocab.json", "config": "config.yaml"}[kind]
    write = {
        "checkpoint": lambda version: save_checkpoint(path, fake_state(version)),
        "vocabulary": lambda version: Vocab(list(SPECIALS) + [f"w{i}" for i in range(version)]).save(path),
        "config": lambda version: atomic_write_text(path, dump_config(replace(Config(), "train", epochs=version))),
    }[kind]
    write(1)
    before = path.read_bytes()
    name, broken = failure
    monkeypatch.setattr(files_module.os, name, broken)
    with pytest.raises((OSError, KeyboardInterrupt)) as info:
        write(2)
    monkeypatch.undo()
    if name == "fsync":
        assert str(path) in str(info.value) and ".tmp" not in str(info.value)  # names the user's file
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind
    if kind == "checkpoint":
        assert load_checkpoint(path)["step"] == 1


def test_atomic_files_get_the_usual_permissions(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert (tmp_path / "a.txt").stat().st_mode == (tmp_path / "b.txt").stat().st_mode
