"""One trial of `seq2seq tune`: an ordinary `seq2seq train` in a subprocess, so that its run directory is like any
other (`info`, `eval` and `train --resume` work on it). The tuner reads the run's metrics.jsonl as it grows, reports
each validation to the trial with the seconds of training as the step, and stops the run when the pruner says so.

Time, not updates, is the resource: settings that make more or fewer updates a second (a model's size, the batch)
are compared at equal minutes of training, which is what the budget buys. The run is stopped with SIGINT, the
signal on which training finishes its update, saves last.pt and exits 130 (training/interrupt.py); it runs in its
own session, so that a Ctrl-C at the terminal reaches the tuner alone, which then stops the run the same way.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from seq2seq.tools.tune_space import as_overrides
from seq2seq.training.metrics import read_metrics
from seq2seq.training.rundir import RunFiles
from seq2seq.training.schedule import improves

POLL_SECONDS = 0.5  # how often the run's metrics.jsonl is read: a validation is seconds of work at the least
STOP_GRACE_SECONDS = 120.0  # a stopped run ends its update (or its validation) and writes last.pt before it exits
STDERR_FILE = "stderr.log"  # the run's warnings and its last line (with --quiet, the log goes to train.log)


@dataclass(frozen=True)
class Outcome:
    """How a trial's run ended: `state` is complete, pruned or failed; `value` the run's best validation score."""

    state: str
    value: float | None
    seconds: float  # of training, the run's own clock (metrics.jsonl's `elapsed`)
    updates: int
    wall: float  # seconds the trial took, the start-up and the validations included
    pruned_at: float | None = None  # seconds of training when the pruner stopped it
    error: str = ""


class Reporter:
    """Reports a run's validations to its Optuna trial and asks the pruner after each.

    The value reported is the best score of `metric` so far, not the last one, so that a rung of the pruner compares
    what each trial had reached by that time, as the trial's final value (its best) does. The step is the whole
    seconds of training; a second already reported is skipped (Optuna keeps one value a step), and the best of a
    later validation in it arrives with the next second. From `until` seconds on (the trial's max_time) the pruner
    is not asked: the run has done its training, and stopping it would only call a finished trial pruned.
    """

    def __init__(self, trial: Any, metric: str, until: float | None = None):
        self.trial, self.metric, self.key, self.until = trial, metric, f"val_{metric}", until
        self.best: float | None = None
        self.seconds, self.updates = 0.0, 0
        self.validations = 0  # validation records taken so far
        self.reported: int | None = None  # the last second reported

    def score(self, record: dict[str, Any]) -> float | None:
        """A record's score of the metric (None: not a validation). With train.ema_decay a validation scores the
        moving average too (`val_ema_<metric>`), and the better of the two is what best.pt holds."""
        best = None
        for key in (self.key, f"val_ema_{self.metric}"):
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and improves(value, best, self.metric):
                best = float(value)
        return best

    def feed(self, records: Sequence[dict[str, Any]]) -> bool:
        """Take the run's records (all of them, as read_metrics returns them); True when the pruner says stop."""
        if records:
            self.updates = max(r["step"] for r in records)
            self.seconds = max(float(r.get("elapsed") or 0.0) for r in records)
        scored = [(r, score) for r in records if (score := self.score(r)) is not None]
        prune = False
        for record, score in scored[self.validations :]:
            if improves(score, self.best, self.metric):
                self.best = score
            second = int(record.get("elapsed") or 0)
            if not prune and (self.reported is None or second > self.reported):
                self.trial.report(self.best, second)
                self.reported = second
                prune = (self.until is None or record.get("elapsed", 0) < self.until) and self.trial.should_prune()
        self.validations = len(scored)
        return prune


def train_command(config: Path, overrides: Sequence[str], settings: dict[str, Any], run_dir: Path, minutes: float) -> list[str]:
    """`python -m seq2seq train` for one trial: the base config and overrides, the trial's settings, its run
    directory and minutes (later --set win: the trial's own keys override the user's)."""
    keys = [*overrides, *as_overrides(settings), *as_overrides({"train.run_dir": str(run_dir), "train.max_time": minutes})]
    return [sys.executable, "-m", "seq2seq", "train", "--config", str(config), *(a for k in keys for a in ("--set", k)), "--quiet"]


def stop(proc: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGINT: the run saves last.pt and exits; past `grace` seconds it is killed (its last checkpoint stays)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read_records(path: Path) -> list[dict[str, Any]]:
    """The run's records so far (none before the run has written its first)."""
    return read_metrics(path) if path.exists() else []


def watch(proc: subprocess.Popen, metrics: Path, reporter: Reporter, poll: float = POLL_SECONDS) -> bool:
    """Feed the reporter until the run ends (False) or the pruner stops it (True)."""
    while True:
        ended = proc.poll() is not None  # before reading, so that the records of a run that ended are all read
        prune = reporter.feed(read_records(metrics))
        if ended:
            return False
        if prune:
            stop(proc)
            return True
        time.sleep(poll)


def last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_trial(trial: Any, command: list[str], run_dir: Path, metric: str, minutes: float) -> Outcome:
    """Train one trial's run (`minutes` of training) in a subprocess, reporting its validations to `trial`; an
    interrupt of the tuner (KeyboardInterrupt) stops the run as pruning does and is raised again."""
    files = RunFiles(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    reporter = Reporter(trial, metric, until=minutes * 60)
    started = time.monotonic()
    with open(run_dir / STDERR_FILE, "wb") as err:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        try:
            pruned = watch(proc, files.metrics, reporter)
        except BaseException:
            stop(proc)
            raise
    figures = dict(value=reporter.best, seconds=reporter.seconds, updates=reporter.updates, wall=time.monotonic() - started)
    if pruned:
        return Outcome("pruned", pruned_at=float(reporter.reported or 0), **figures)
    if proc.returncode != 0:
        return Outcome("failed", error=last_line(run_dir / STDERR_FILE) or f"exit code {proc.returncode}", **figures)
    if reporter.best is None:
        return Outcome("failed", error=f"no validation score val_{metric} in {files.metrics}", **figures)
    return Outcome("complete", **figures)
