"""What the loop promises around a resume and on its output: the run's best score (not this session's), a finished
or out-of-time run that says so, a learning-rate curve a resume does not bend, and no progress-bar frames in logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq.config import load_config
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.training.metrics import read_metrics
from seq2seq.training.schedule import LRSchedule
from seq2seq.training.trainer import train
from tests.conftest import invoke
from tests.training.test_resume import write_tiny_setup


@pytest.mark.parametrize("stop", ["train.epochs=1", "train.max_time=0.0001"])
def test_resuming_a_finished_run_says_so_and_reports_the_runs_best(tmp_path, monkeypatch, capsys, stop):
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=3, n=80)
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--set", f"train.run_dir={run}", "--set", stop, "--quiet"]
    code, _, err = invoke(capsys, monkeypatch, *args)
    assert code == 0, err
    best = max(r["val_bleu"] for r in read_metrics(run / "metrics.jsonl") if "val_bleu" in r)
    code, _, err = invoke(capsys, monkeypatch, *args, "--resume")
    assert code == 0, err
    reason = stop.split("=")[0]
    assert f"is finished ({reason}" in err  # a warning: --quiet shows it
    assert f"best val BLEU {best:.2f}" in err and "nan" not in err


def test_a_resume_keeps_the_learning_rate_curve_and_says_when_it_runs_past_it(tmp_path, monkeypatch):
    """warmup_cosine planned over 6 updates: resumed with max_steps 10, updates 7-10 run at min_lr, as the curve
    that was planned says, instead of a curve recomputed over 10 updates (a jump up)."""
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=5, n=80)
    keys = ["train.schedule=warmup_cosine", "train.warmup_steps=2", "train.min_lr=0.001", "train.log_every=1"]
    run = tmp_path / "run"
    train(load_config(config, [*keys, "train.max_steps=6"]), run, quiet=True)
    train(load_config(config, [*keys, "train.max_steps=10"]), run, resume=True, quiet=True)
    lrs = {r["step"]: r["lr"] for r in read_metrics(run / "metrics.jsonl") if "lr" in r}
    planned = LRSchedule.from_config(load_config(config, keys).train, default_decay_steps=6)
    assert [lrs[s] for s in range(1, 11)] == pytest.approx([planned.lr_at(s) for s in range(1, 11)])
    assert lrs[7] == pytest.approx(0.001)
    assert "past its learning-rate schedule (planned over 6 updates)" in (run / "train.log").read_text()


def test_no_progress_bar_frames_when_stderr_is_not_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=2, n=80)
    train(load_config(config, ["train.valid_every=3"]), tmp_path / "run", quiet=False)
    err = capsys.readouterr().err
    assert "\r" not in err  # no bar refreshes (pytest's stderr is no terminal)
    assert "step 3: val loss" in err and "done:" in err  # the plain log lines stay


@pytest.mark.parametrize("metric", ["chrf", "cer"])
def test_best_and_the_k_best_follow_train_metric(tmp_path, monkeypatch, metric):
    """best.pt is the first validation with the best val_<metric>, ckpt-STEP.pt the k best: highest chrF, lowest CER."""
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=5, n=80)
    run = tmp_path / "run"
    keys = [f"train.metric={metric}", "train.valid_every=2", "train.max_steps=10", "train.keep_best=2", "train.lr=0.03"]
    result = train(load_config(config, keys), run, quiet=True)
    validations = [r for r in read_metrics(run / "metrics.jsonl") if f"val_{metric}" in r]
    sign = 1 if metric == "cer" else -1
    ranked = sorted(validations, key=lambda r: sign * r[f"val_{metric}"])  # stable: the earlier step first on a tie
    assert len({r[f"val_{metric}"] for r in validations}) > 1  # the scores moved: the choice means something
    assert Checkpoint.read(run / "best.pt").scores["step"] == ranked[0]["step"] == result.best_scores["step"]
    assert result.progress.best_score == ranked[0][f"val_{metric}"] and result.progress.metric == metric
    assert sorted(p.name for p in run.glob("ckpt-*.pt")) == sorted(f"ckpt-{r['step']}.pt" for r in ranked[:2])
