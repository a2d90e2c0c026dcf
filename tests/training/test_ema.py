"""train.ema_decay: the moving average's arithmetic on a tiny model, and in a run: scored beside the raw weights at
each validation, best.pt and the k best taking whichever scored better, early stopping and the plateau following it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from seq2seq.config import load_config
from seq2seq.model.checkpoint import Checkpoint, load_checkpoint
from seq2seq.training import trainer, validate
from seq2seq.training.ema import EMA, ema_keys, ema_views
from seq2seq.training.metrics import read_metrics
from tests.conftest import tiny_model
from tests.training.test_resume import train_in_process, write_tiny_setup


def test_ema_moves_each_weight_by_one_minus_decay_towards_the_model() -> None:
    model = tiny_model(0)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    ema = EMA(model, decay=0.75)
    expected = dict(start)
    # the warm-up: d = min(0.75, (1 + n) / (10 + n)) = 0.1, 2/11, 3/12 for n = 0, 1, 2; then 0.75 from n = 26 on
    for n, value in enumerate((1.0, -3.0, 0.5)):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
        ema.update(model)
        d = min(0.75, (1 + n) / (10 + n))
        expected = {name: d * w + (1 - d) * value for name, w in expected.items()}
    averaged = dict(ema.model.named_parameters())
    for name, w in expected.items():
        assert torch.allclose(averaged[name], w, atol=1e-6), name
        assert averaged[name].dtype == torch.float32 and not averaged[name].requires_grad
    assert all(torch.all(p == 0.5) for p in model.parameters())  # the model itself is not touched
    copy = EMA(tiny_model(1), decay=0.75)
    copy.load_state_dict(ema.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(copy.model.parameters(), ema.model.parameters()))
    assert copy.updates == 3 and copy.current_decay() == ema.current_decay() == 4 / 13
    assert ema.weights().keys() == model.state_dict().keys()  # best.pt may hold it as the model's weights
    ema.updates = 10_000
    assert ema.current_decay() == 0.75  # past the warm-up: the configured decay


def test_the_emas_record_sits_beside_the_raw_one_and_may_be_the_best() -> None:
    record = {"step": 4, "epoch": 1, "val_loss": 2.0, "val_bleu": 10.0, "elapsed": 3.0}
    both = {**record, **ema_keys({**record, "val_loss": 1.5, "val_bleu": 12.0})}
    assert both["val_ema_bleu"] == 12.0 and both["val_ema_loss"] == 1.5 and both["val_bleu"] == 10.0
    views = ema_views([both])
    assert views[1] == {"step": 4, "epoch": 1, "elapsed": 3.0, "val_loss": 1.5, "val_bleu": 12.0, "ema": True}


def score_models_as(monkeypatch: pytest.MonkeyPatch, raw: object, ema: object) -> None:
    """Validation scores BLEU by `raw(call)` for the raw weights and `ema(call)` for the EMA's (the copy that needs
    no gradient), each call counted from 1: scores that make the choice certain."""
    real = validate.validation_scores
    calls = {"raw": 0, "ema": 0}

    def scores(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        which = "raw" if next(model.parameters()).requires_grad else "ema"
        calls[which] += 1
        bleu = (raw if which == "raw" else ema)(calls[which])  # type: ignore[operator]
        return dataclasses.replace(real(model, *args, **kwargs), bleu=float(bleu))

    monkeypatch.setattr(validate, "validation_scores", scores)


@pytest.mark.parametrize("ema_better", [True, False])
def test_best_pt_and_the_k_best_hold_the_emas_weights_when_they_score_better(tmp_path, monkeypatch, ema_better):
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=1, n=80)  # 5 updates, validated once, at the end
    score_models_as(monkeypatch, raw=lambda n: 20.0, ema=lambda n: 30.0 if ema_better else 10.0)
    run = tmp_path / "run"
    train(config, run, ["train.ema_decay=0.5", "train.keep_best=2"])
    last = load_checkpoint(run / "last.pt")
    best, kept = Checkpoint.read(run / "best.pt"), Checkpoint.read(run / "ckpt-5.pt")
    chosen = last["ema"]["weights"] if ema_better else last["model"]
    other = last["model"] if ema_better else last["ema"]["weights"]
    for ckpt in (best, kept):
        assert all(torch.equal(ckpt.weights[name], chosen[name]) for name in chosen)
        assert not all(torch.equal(ckpt.weights[name], other[name]) for name in other)
    assert best.scores is not None and best.scores["val_bleu"] == (30.0 if ema_better else 20.0)
    assert best.scores.get("ema", False) is ema_better
    assert last["progress"]["best_score"] == (30.0 if ema_better else 20.0)
    record = [r for r in read_metrics(run / "metrics.jsonl") if "val_bleu" in r][-1]
    assert record["val_bleu"] == 20.0 and record["val_ema_bleu"] == (30.0 if ema_better else 10.0)
    log_text = (run / "train.log").read_text(encoding="utf-8")
    assert ("(best, EMA)" in log_text) is ema_better
    assert ("(best)" in log_text) is not ema_better


def train(config: Path, run: Path, keys: list[str]) -> trainer.TrainResult:
    threads = torch.get_num_threads()
    try:
        return trainer.train(load_config(config, keys), run, quiet=True)
    finally:
        torch.set_num_threads(threads)


def test_early_stopping_and_the_plateau_follow_the_better_of_the_two(tmp_path, monkeypatch):
    """The raw weights never improve after the first validation, the EMA always does: patience 1 would stop the
    run at the second validation, and the plateau would halve the rate, if they followed the raw weights."""
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=2, n=80)
    score_models_as(monkeypatch, raw=lambda n: 5.0, ema=lambda n: 5.0 + n)
    keys = ["train.ema_decay=0.9", "train.valid_every=1", "train.max_steps=6", "train.patience=1",
            "train.schedule=plateau", "train.plateau_patience=1", "train.log_every=1"]
    result = train(config, tmp_path / "run", keys)
    assert result.progress.step == 6 and result.progress.best_score == 11.0
    assert result.best_scores is not None and result.best_scores["step"] == 6 and result.best_scores["ema"] is True
    lrs = [r["lr"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "lr" in r]
    assert lrs == [0.01] * 6
