"""The training loop: the k best checkpoints and the schedule in a real run, early stopping, bf16 training that
learns, the non-finite-loss guard, save_every, and a wrong data path that leaves nothing behind."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import seq2seq.training.trainer as train_module
from seq2seq.config import TrainConfig, load_config
from seq2seq.data.batch import collate
from seq2seq.errors import DataError
from seq2seq.model.checkpoint import Checkpoint, load_checkpoint
from seq2seq.training.schedule import LRSchedule
from seq2seq.training.trainer import train, train_step
from tests.conftest import bpe_config, tiny_model
from tests.training.test_resume import train_in_process, write_tiny_setup


def test_run_keeps_its_k_best_checkpoints_and_follows_its_schedule(bpe_run: Path) -> None:
    run = bpe_run  # 12 steps, validating every 3, keep_best 2, warmup_cosine over 4 warmup steps
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "val_bleu" in r]
    assert [r["step"] for r in validations] == [3, 6, 9, 12]
    best_two = sorted(validations, key=lambda r: -r["val_bleu"])[:2]  # stable: earlier step first on ties
    assert sorted(p.name for p in run.glob("ckpt-*.pt")) == sorted(f"ckpt-{r['step']}.pt" for r in best_two)
    state = load_checkpoint(run / "last.pt")
    assert [k["step"] for k in state["kept_best"]] == [r["step"] for r in best_two]
    cfg = Checkpoint.read(run / "last.pt").config
    expected = LRSchedule.from_config(cfg.train, default_decay_steps=12)
    assert [r["lr"] for r in records if "lr" in r] == pytest.approx([expected.lr_at(s) for s in range(1, 13)])


def test_early_stopping_ends_the_run_after_patience_validations_without_gain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a learning rate too small to change any output, BLEU never improves after the first validation."""
    monkeypatch.chdir(tmp_path)
    cfg = bpe_config(tmp_path, max_steps=40, valid_every=2, patience=2, lr=1e-12)
    result = train(cfg, Path(cfg.train.run_dir), quiet=True)
    assert result.progress.step == 6  # validations at 2 (first: a gain), 4 and 6 (no gain) -> stop
    state = load_checkpoint(Path(cfg.train.run_dir) / "last.pt")
    assert state["early_stopping"]["bad"] == 2


def test_bf16_training_still_learns():
    """train_step under bf16 autocast learns to reverse sequences: the loss per token falls from above 1.5 to
    under 0.3 in 150 updates (seeds 0 and 1 reached 0.07 and 0.15)."""
    rng = random.Random(0)
    torch.manual_seed(0)
    model = tiny_model(0, vocab=12, attention="luong", emb_size=16, hidden_size=32).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    t = TrainConfig(label_smoothing=0.0)
    losses = []
    for _ in range(150):
        seqs = [[rng.randrange(4, 12) for _ in range(rng.randint(2, 6))] for _ in range(32)]
        b = collate([(s + [3], s[::-1]) for s in seqs])
        finite, loss_sum, n = train_step(model, model, optimizer, b, t, torch.device("cpu"), "bf16")
        assert finite
        losses.append(float(loss_sum) / n)
    assert losses[0] > 1.5 and sum(losses[-20:]) / 20 < 0.3, (losses[0], losses[-20:])


def test_non_finite_losses_skip_updates_then_stop_keeping_the_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=3, save_every=2, n=80)
    text = config.read_text().replace("save_every: 2", "save_every: 2, max_bad_steps: 3")
    config.write_text(text)
    real = train_module.masked_nll
    calls = {"n": 0}

    def poisoned(logits, tgt_out, label_smoothing=0.0):
        calls["n"] += 1
        loss_sum, n = real(logits, tgt_out, label_smoothing)
        # step 3 is bad alone (skipped, training goes on); from step 6 on every loss is NaN
        if calls["n"] == 3 or calls["n"] >= 6:
            loss_sum = loss_sum * float("nan")
        return loss_sum, n

    monkeypatch.setattr(train_module, "masked_nll", poisoned)
    run = tmp_path / "run"
    with pytest.raises(DataError, match=r"3 non-finite losses in a row \(train.max_bad_steps\).*last good checkpoint"):
        train_in_process(config, run)
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 6  # saved at step 6 (save_every 2), before the third bad step (8)
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    log = (run / "train.log").read_text()
    assert "step 3: non-finite loss or gradient, update skipped (1 in a row)" in log
    assert "step 8: non-finite loss or gradient, update skipped (3 in a row)" in log


def test_save_every_writes_last_pt_between_validations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=1, save_every=2, n=80)
    run = tmp_path / "run"
    saved: list[int] = []
    real = Checkpoint.write

    def spy(self, path):
        if Path(path).name == "last.pt":
            saved.append(self.step)
        real(self, path)

    monkeypatch.setattr(Checkpoint, "write", spy)
    train_in_process(config, run)
    assert saved == [2, 4, 5]  # every 2 updates, then at the end-of-epoch validation (5 batches)


@pytest.mark.parametrize("key", ["data.train", "data.valid"])
def test_a_wrong_data_path_leaves_no_run_directory(tmp_path, key):
    config = write_tiny_setup(tmp_path, epochs=1)
    run = tmp_path / "never"
    with pytest.raises(DataError, match="file not found"):
        train(load_config(config, [f"{key}={tmp_path / 'missing'}"]), run, quiet=True)
    assert not run.exists()


@pytest.mark.parametrize("clip_grad", [0.0, 1.0])
def test_a_non_finite_gradient_skips_the_update_whatever_the_clipping(clip_grad: float) -> None:
    """The loss is finite, one gradient is not: no weight changes, with clipping off (0) as with it on."""
    model = tiny_model(0, vocab=12).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    next(model.parameters()).register_hook(lambda grad: grad * float("inf"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = collate([([4, 5, 3], [6, 7]), ([8, 3], [9])])
    finite, loss_sum, _ = train_step(model, model, optimizer, batch, TrainConfig(clip_grad=clip_grad), torch.device("cpu"), "fp32")
    assert not finite and torch.isfinite(loss_sum)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
