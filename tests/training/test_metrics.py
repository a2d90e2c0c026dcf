"""Metrics: metrics.jsonl holds the training and validation records of a run (and TensorBoard the same, when
installed); a resume purges what came after its checkpoint; a torn last line is skipped, a bad middle one is not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import seq2seq
from seq2seq.errors import ConfigError
from seq2seq.training.metrics import MetricsLogger, read_metrics
from tests.conftest import API_RUN_EPOCHS, needs_tensorboard


@pytest.fixture
def run(api_run: Path) -> Path:
    return api_run


def test_metrics_jsonl_holds_train_and_validation_records(run: Path) -> None:
    records = read_metrics(run / "metrics.jsonl")
    train = [r for r in records if "train_loss" in r]
    val = [r for r in records if "val_loss" in r]
    assert train and len(val) == API_RUN_EPOCHS
    for r in train:
        assert {"step", "epoch", "train_loss", "lr", "tokens_per_s", "elapsed"} <= r.keys()
        assert r["step"] % 3 == 0 and r["tokens_per_s"] > 0 and r["lr"] == pytest.approx(0.01)
    for r in val:
        assert {"step", "epoch", "val_loss", "val_ppl", "val_bleu", "val_chrf", "elapsed"} <= r.keys()
        assert r["val_ppl"] == pytest.approx(torch.tensor(r["val_loss"]).exp().item(), rel=1e-5)
    # the validation after epoch k says epoch k, not k + 1
    assert [r["epoch"] for r in val] == list(range(1, API_RUN_EPOCHS + 1))
    steps = [r["step"] for r in records]
    assert steps == sorted(steps)
    assert [r["elapsed"] for r in records] == sorted(r["elapsed"] for r in records)


def test_metrics_logger_purges_records_after_the_resume_step(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    logger = MetricsLogger(path)
    for step in (10, 20, 30):
        logger.log({"step": step, "train_loss": 1.0 / step})
    logger.close()
    resumed = MetricsLogger(path, purge_step=20)
    resumed.log({"step": 25, "train_loss": 0.5})
    assert [r["step"] for r in read_metrics(path)] == [10, 20, 25]


def test_read_metrics_skips_a_torn_last_line_but_not_a_bad_middle_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "train_loss": 2.0}\n{"step": 2, "tra', encoding="utf-8")
    assert [r["step"] for r in read_metrics(path)] == [1]
    path.write_text('{"step": 1\n{"step": 2, "train_loss": 2.0}\n', encoding="utf-8")
    with pytest.raises(seq2seq.errors.DataError, match=r"metrics.jsonl:1"):
        read_metrics(path)


@needs_tensorboard
def test_tensorboard_events_read_back(run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/tokens_per_s", "val/loss", "val/bleu", "val/chrf", "val/ppl"} <= tags
    records = read_metrics(run / "metrics.jsonl")
    expected = [(r["step"], r["val_bleu"]) for r in records if "val_bleu" in r]
    got = [(e.step, e.value) for e in events.Scalars("val/bleu")]
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-5)


def test_tensorboard_without_the_extra_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    # the extra's packages (from the installed metadata), then the checkout's way
    with pytest.raises(ConfigError, match=r"^train\.tensorboard: TensorBoard is not installed: pip install .*\(from the checkout: pip install -e '\.\[tensorboard\]'\)$"):
        MetricsLogger(tmp_path / "metrics.jsonl", tmp_path / "tb")
