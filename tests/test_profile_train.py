"""scripts/profile_train.py: the phases it times add up to the run, the forward and backward passes are found inside
the training step (not in validation's loss), and nothing it patched stays patched."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from seq2seq.config import config_from_dict
from seq2seq.training import trainer
from tests.conftest import ROOT, toy_pairs, write_corpus

SCRIPT = ROOT / "scripts" / "profile_train.py"


def load_script():
    spec = importlib.util.spec_from_file_location("profile_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_phases_add_up_and_every_patch_is_undone(tmp_path: Path) -> None:
    profile_train = load_script()
    originals = (trainer.train_step, trainer.collate, trainer.loop, torch.Tensor.backward, torch.nn.utils.clip_grad_norm_)
    pairs = toy_pairs("train", 200)
    cfg = config_from_dict({
        "data": {"train": write_corpus(tmp_path, "train", pairs), "valid": write_corpus(tmp_path, "val", pairs[:20]), "src_lang": "en", "tgt_lang": "de"},
        "model": {"emb_size": 16, "hidden_size": 24, "dropout": 0.0},
        "train": {"batch_size": 20, "max_steps": 7, "valid_every": 5, "log_every": 2, "ema_decay": 0.9, "num_threads": 1,
                  "run_dir": str(tmp_path / "run")},
    })
    result, timers, total, phases = profile_train.profile(cfg, tmp_path / "run")
    assert result.progress.step == 7
    assert timers.calls["forward"] == timers.calls["backward"] == timers.calls["optimizer"] == 7  # not validation's passes
    assert timers.calls["validation"] == 1 and timers.calls["final validation"] == 1  # at step 5, and train's last at 7
    assert all(phases[name] > 0 for name in ("data", "forward", "backward", "optimizer", "ema", "validation", "setup"))
    assert sum(phases.values()) == pytest.approx(total)
    assert (trainer.train_step, trainer.collate, trainer.loop, torch.Tensor.backward, torch.nn.utils.clip_grad_norm_) == originals
