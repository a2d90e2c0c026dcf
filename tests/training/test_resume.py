"""Exact resume: a run killed at any moment and resumed ends bitwise equal to the run never interrupted.

Also: Ctrl-C saves last.pt and exits 130 with the resume command; what a resume drops (metrics past the checkpoint);
a run with the moving average of its weights and a learning-rate horizon planned from a time budget (on a clock
that counts updates and validations, so that the budget is the same in every session).
"""

from __future__ import annotations

import json
import random
import shlex
import signal
import time
from pathlib import Path

import pytest
import torch

from seq2seq.model.checkpoint import load_checkpoint
from seq2seq.config import load_config
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.training import trainer, validate
from seq2seq.training.interrupt import TrainingInterrupted
from seq2seq.training.metrics import read_metrics
from seq2seq.training.schedule import LRSchedule
from seq2seq.training.trainer import train
from tests.conftest import TOY, ForkedCli, start_cli


# Dropout and teacher forcing < 1 make every step draw from the torch RNG: a resume that restored it
# wrongly, or replayed a batch, could not end bitwise equal.
CONFIG = """\
data: {{train: toy, valid: toy_val, src_lang: en, tgt_lang: de}}
model: {{emb_size: 8, hidden_size: 16, dropout: 0.3, attention: bahdanau}}
train: {{epochs: {epochs}, batch_size: 16, lr: 0.01, seed: 3, num_threads: 1, save_every: {save_every},
        teacher_forcing_ratio: 0.7, valid_every: 0, log_every: 5, device: cpu}}
decode: {{batch_size: 64}}
"""


def write_tiny_setup(directory: Path, epochs: int = 5, save_every: int = 2, n: int = 200) -> Path:
    """200 toy training pairs, 30 validation pairs and a tiny config in `directory`; returns the config path."""
    for lang in ("en", "de"):
        lines = (TOY / f"train.{lang}").read_text(encoding="utf-8").splitlines(keepends=True)
        (directory / f"toy.{lang}").write_text("".join(lines[:n]), encoding="utf-8")
        (directory / f"toy_val.{lang}").write_text("".join(lines[n : n + 30]), encoding="utf-8")
    config = directory / "tiny.yaml"
    config.write_text(CONFIG.format(epochs=epochs, save_every=save_every), encoding="utf-8")
    return config


def cli(*args: str, cwd: Path) -> ForkedCli:
    """`python -m seq2seq ARGS`, started and left running: a process of its own to signal and kill (forked from one
    that has imported torch already, tests/forkserver.py)."""
    return start_cli(*args, cwd=cwd)


def train_in_process(config: Path, run_dir: Path, resume: bool = False, **stop: object) -> None:
    """Train in this process (cheaper than a subprocess), keeping torch's thread count as it was."""
    threads = torch.get_num_threads()
    try:
        train(load_config(config), run_dir, resume=resume, quiet=True, **stop)
    finally:
        torch.set_num_threads(threads)


def saved_step(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["step"])
    except Exception:  # not written yet
        return -1


def assert_same_training_state(a: Path, b: Path) -> None:
    """Weights, optimizer state and the EMA's weights bitwise equal, same schedule and progress (time aside)."""
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    assert sa["model"].keys() == sb["model"].keys()
    for name in sa["model"]:
        assert torch.equal(sa["model"][name], sb["model"][name]), name
    opt_a, opt_b = sa["optimizer"]["state"], sb["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for index in opt_a:
        for key in opt_a[index]:
            assert torch.equal(opt_a[index][key], opt_b[index][key]), (index, key)
    ema_a, ema_b = sa.get("ema", {}).get("weights", {}), sb.get("ema", {}).get("weights", {})
    for name in ema_a:
        assert torch.equal(ema_a[name], ema_b[name]), f"ema {name}"
    assert ema_a.keys() == ema_b.keys() and sa.get("ema", {}).get("updates") == sb.get("ema", {}).get("updates")
    assert sa["schedule"] == sb["schedule"]
    pa, pb = dict(sa["progress"]), dict(sb["progress"])
    for timed in ("elapsed", "valid_seconds", "warm_elapsed", "warm_valid_seconds"):
        pa.pop(timed, None), pb.pop(timed, None)
    assert pa == pb
    assert torch.equal(sa["rng"]["torch"], sb["rng"]["torch"])


def test_killed_at_random_moments_and_resumed_ends_bitwise_equal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # train() records runs/latest under the working directory
    config = write_tiny_setup(tmp_path)
    train_in_process(config, tmp_path / "reference")

    run = tmp_path / "run"
    config_arg = ["--config", "tiny.yaml", "--set", f"train.run_dir={run}", "--quiet"]
    rng = random.Random(20240611)
    # SIGKILL (no chance to clean up, possibly in the middle of writing last.pt), Ctrl-C, SIGKILL again.
    interruptions = [signal.SIGKILL, signal.SIGINT, signal.SIGKILL]
    resume_command: list[str] | None = None
    for sig in interruptions:
        before = saved_step(run / "last.pt")
        args = resume_command or ["train", *config_arg, *(["--resume"] if before >= 0 else [])]
        proc = cli(*args, cwd=tmp_path)
        deadline = time.monotonic() + 120
        while saved_step(run / "last.pt") <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # wait until this session has trained and saved something
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        stderr = err.decode()
        resume_command = None
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL, stderr
        else:
            assert proc.returncode == 130, stderr
            last_line = stderr.strip().splitlines()[-1]
            assert "stopped by SIGINT" in last_line and "resume with: seq2seq train" in last_line, stderr
            assert "Traceback" not in stderr
            resume_command = shlex.split(last_line.split("resume with: ", 1)[1])[2:]  # drop "seq2seq train"
            resume_command = ["train", *resume_command]
            assert "--resume" in resume_command
            assert last_line in (run / "train.log").read_text(encoding="utf-8")  # the log keeps it too
            # the signal's step was saved: nothing is lost
            assert saved_step(run / "last.pt") > before
    assert saved_step(run / "last.pt") < saved_step(tmp_path / "reference" / "last.pt"), "the kills came too late"
    train_in_process(config, run, resume=True)
    assert not list(run.glob(".*.tmp"))  # a SIGKILL inside a write leaves one; the resume removed it
    assert_same_training_state(tmp_path / "reference" / "last.pt", run / "last.pt")
    # metrics past the checkpoint a crash fell back to were dropped, not duplicated
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    ref_steps = [json.loads(line)["step"] for line in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]
    assert steps == ref_steps


class StopAfter:
    """A stop request that turns true after `n` steps (the loop reads `requested` once per step)."""

    signal_name = "TEST"

    def __init__(self, n: int):
        self.n, self.reads = n, 0

    @property
    def requested(self) -> bool:
        self.reads += 1
        return self.reads >= self.n


def test_resume_from_every_checkpoint_is_exact(tmp_path, monkeypatch):
    """Resuming from any save_every checkpoint (mid-epoch, end of epoch, after validation) is exact."""
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=2, save_every=1, n=80)
    train_in_process(config, tmp_path / "reference")
    reference = load_checkpoint(tmp_path / "reference" / "last.pt")
    total = int(reference["step"])
    for stop_at in (1, 4, 5, total - 1):  # 5 steps per epoch: 5 is an epoch end
        run = tmp_path / f"run{stop_at}"
        with pytest.raises(TrainingInterrupted) as info:
            train_in_process(config, run, stop_request=StopAfter(stop_at))
        assert info.value.step == stop_at and saved_step(run / "last.pt") == stop_at
        train_in_process(config, run, resume=True)
        assert_same_training_state(tmp_path / "reference" / "last.pt", run / "last.pt")


class UpdateClock:
    """A clock for `train(clock=...)` that moves only with the work: 1 s per update and 5 s per model validated.
    A session's time is then its updates' and validations', so a resumed run meets the budget where the run never
    interrupted met it, and plans the same horizon."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        step, scores = trainer.train_step, validate.validation_scores

        def timed_step(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.now += 1.0
            return step(*args, **kwargs)

        def timed_scores(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.now += 5.0
            return scores(*args, **kwargs)

        monkeypatch.setattr(trainer, "train_step", timed_step)
        monkeypatch.setattr(validate, "validation_scores", timed_scores)

    def __call__(self) -> float:
        return self.now


# wsd under a budget of 2.5 min, with the EMA: each validation (every 2 updates) scores two models, 10 s; the first at
# update 2 (warmup's end) ends at 12 s, a pace of 1 s per update + 10 s per 2 updates: 2 + (150 - 12) / 6 = 25 updates.
BUDGET_KEYS = [
    "train.schedule=wsd", "train.warmup_steps=2", "train.max_time=2.5", "train.valid_every=2", "train.ema_decay=0.9",
    "train.epochs=10", "train.log_every=1",
]


def train_on_clock(config: Path, run_dir: Path, clock: UpdateClock, resume: bool = False, **stop: object) -> None:
    threads = torch.get_num_threads()
    try:
        train(load_config(config, BUDGET_KEYS), run_dir, resume=resume, quiet=True, clock=clock, **stop)
    finally:
        torch.set_num_threads(threads)


def test_a_budget_planned_horizon_and_the_ema_resume_exactly(tmp_path, monkeypatch):
    """Killed in warmup (1), at its end (2), just after it (3), in the stable phase (11) and just after the plan (21): each resumed
    run ends bitwise equal to the run never interrupted, EMA included, with the same horizon and curve."""
    monkeypatch.chdir(tmp_path)
    config = write_tiny_setup(tmp_path, epochs=10, save_every=1, n=80)
    clock = UpdateClock(monkeypatch)
    reference = tmp_path / "reference"
    train_on_clock(config, reference, clock)
    state = load_checkpoint(reference / "last.pt")
    assert state["schedule"]["decay_steps"] == 25 and state["step"] == 26  # 145 s after 25 updates: one more
    assert "ema" in state and state["progress"]["validations"] == 13
    log_text = (reference / "train.log").read_text(encoding="utf-8")
    # wsd plans at the start of its decay, 80% of the 150 s: update 20, after 18 updates of 1 s past warmup
    assert ("learning-rate horizon: 25 updates, planned from the rate of updates 3-20 (10.0 updates/min incl. "
            "validation) for max_time 2.5 min; the decay runs from update 21") in log_text
    lrs = {r["step"]: r["lr"] for r in read_metrics(reference / "metrics.jsonl") if "lr" in r}
    planned = LRSchedule.from_config(Checkpoint.read(reference / "last.pt").config.train, 50)
    planned.plan(25)
    assert [lrs[s] for s in range(1, 27)] == pytest.approx([planned.lr_at(s) for s in range(1, 27)])
    for stop_at in (1, 2, 3, 11, 21):
        run = tmp_path / f"run{stop_at}"
        with pytest.raises(TrainingInterrupted):
            train_on_clock(config, run, clock, stop_request=StopAfter(stop_at))
        assert saved_step(run / "last.pt") == stop_at
        train_on_clock(config, run, clock, resume=True)
        assert_same_training_state(reference / "last.pt", run / "last.pt")
        assert (run / "best.pt").read_bytes() != b"" and Checkpoint.read(run / "best.pt").step == Checkpoint.read(reference / "best.pt").step
