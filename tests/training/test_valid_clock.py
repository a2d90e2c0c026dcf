"""train.valid_every_minutes: validation by the training clock, its config errors, its schedule under a budget, its
resume and its agreement across DDP ranks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seq2seq.config import load_config
from seq2seq.errors import ConfigError
from seq2seq.model.checkpoint import load_checkpoint
from seq2seq.training.interrupt import TrainingInterrupted
from seq2seq.training.metrics import read_metrics
from seq2seq.training.schedule import Pace, updates_between_validations, validation_due
from seq2seq.training.trainer import train
from tests.training.test_resume import StopAfter, UpdateClock, assert_same_training_state, saved_step, write_tiny_setup


@pytest.mark.parametrize("value, problem", [("0", "must be > 0.0"), ("-1.5", "must be > 0.0")])
def test_an_interval_of_zero_or_less_is_refused(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"^--set train.valid_every_minutes: {problem}"):
        load_config(None, [f"train.valid_every_minutes={value}"])


def test_both_keys_are_refused_in_a_file_and_by_set(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("train: {valid_every: 500, valid_every_minutes: 2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^.*c\.yaml: train\.valid_every_minutes: .*train\.valid_every \(500\).*set one"):
        load_config(config)
    with pytest.raises(ConfigError, match=r"^--set train\.valid_every_minutes: "):
        load_config(None, ["train.valid_every=500", "train.valid_every_minutes=2"])
    assert load_config(config, ["train.valid_every=0"]).train.valid_every_minutes == 2.0  # one of them: fine


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    (tmp_path / "c.yaml").write_text("train: {valid_every: 500}\n", encoding="utf-8")
    done = run_cli("train", "--config", "c.yaml", "--set", "train.valid_every_minutes=0", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == ["error: --set train.valid_every_minutes: must be > 0.0, got 0.0"]
    both = run_cli("train", "--config", "c.yaml", "--set", "train.valid_every_minutes=1", cwd=tmp_path)
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1
    assert both.stderr.startswith("error: --set train.valid_every_minutes: ") and "train.valid_every (500)" in both.stderr


def test_validation_is_due_at_each_mark_of_the_clock() -> None:
    t = load_config(None, ["train.valid_every_minutes=0.5"]).train  # every 30 s
    assert not validation_due(t, 7, 0.0, 29.9)
    assert validation_due(t, 8, 29.9, 30.2)  # passed the mark of 30 s
    assert not validation_due(t, 9, 31.0, 59.0)  # 30.2 + a validation's 0.8 s: the next mark is 60 s
    assert validation_due(t, 10, 59.0, 91.0)  # a slow update past two marks: one validation
    assert not validation_due(t, 500, 0.0, 1.0)  # updates count for nothing
    by_updates = load_config(None, ["train.valid_every=4"]).train
    assert validation_due(by_updates, 8, 0.0, 1.0) and not validation_due(by_updates, 9, 0.0, 100.0)


def test_a_budget_plans_with_the_validations_the_clock_makes() -> None:
    """Under valid_every_minutes the updates between validations are what the interval holds once a validation took its
    share of it (not valid_every's 0, nor an epoch's batches)."""
    t = load_config(None, ["train.valid_every_minutes=1"]).train
    pace = Pace(step=100, elapsed=60.0, valid_seconds=10.0, validations=1)  # 0.5 s an update, 10 s a validation
    assert updates_between_validations(t, pace, per_epoch=7, valid_seconds=99.0) == pytest.approx((60 - 10) / 0.5)
    assert updates_between_validations(load_config(None).train, pace, per_epoch=7, valid_seconds=99.0) == 7


CLOCK_KEYS = ["train.valid_every_minutes=0.15", "train.valid_every=0", "train.epochs=3", "train.log_every=1"]


def train_on_clock(config: Path, run_dir: Path, clock: UpdateClock, keys: list[str], resume: bool = False, **stop: object) -> None:
    threads = torch.get_num_threads()
    try:
        train(load_config(config, keys), run_dir, resume=resume, quiet=True, clock=clock, **stop)
    finally:
        torch.set_num_threads(threads)


def validated_steps(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["elapsed"]) for r in read_metrics(run / "metrics.jsonl") if "val_loss" in r]


def test_a_run_validates_by_its_clock_not_at_epoch_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1 s an update, 5 s a validation, a mark every 9 s: validations at 9 s (update 9, which ends at 14 s), at 18 s
    (update 13) and at the end (update 15, 25 s); none at the ends of the 5-update epochs."""
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=3, save_every=1, n=80)  # 5 updates an epoch: 15 updates
    train_on_clock(config, tmp_path / "run", UpdateClock(monkeypatch), CLOCK_KEYS)
    # update k ends at k + 5 * (validations before it) seconds
    assert [step for step, _ in validated_steps(tmp_path / "run")] == [9, 13, 15]
    assert [int(elapsed // 9) for _, elapsed in validated_steps(tmp_path / "run")[:2]] == [1, 2]
    log = (tmp_path / "run" / "train.log").read_text(encoding="utf-8")
    assert "validation every 0.15 min of training time (train.valid_every_minutes)" in log


def test_a_clock_driven_run_resumes_on_the_same_marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped before the first mark, just after a validation and between marks, then resumed: the validations come at
    the same updates and the run ends bitwise equal (on a clock that counts the work, the same in every session)."""
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=3, save_every=1, n=80)
    clock = UpdateClock(monkeypatch)
    reference = tmp_path / "reference"
    train_on_clock(config, reference, clock, CLOCK_KEYS)
    for stop_at in (5, 9, 11):
        run = tmp_path / f"run{stop_at}"
        with pytest.raises(TrainingInterrupted):
            train_on_clock(config, run, clock, CLOCK_KEYS, stop_request=StopAfter(stop_at))
        assert saved_step(run / "last.pt") == stop_at
        train_on_clock(config, run, clock, CLOCK_KEYS, resume=True)
        assert validated_steps(run) == validated_steps(reference)
        assert_same_training_state(reference / "last.pt", run / "last.pt")
    assert load_checkpoint(reference / "last.pt")["progress"]["validations"] == 3
