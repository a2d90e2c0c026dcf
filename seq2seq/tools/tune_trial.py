"""One trial of `seq2seq tune`: an ordinary `seq2seq train` in a subprocess, so that its run directory is like any
other (`info`, `eval` and `train --resume` work on it). The run validates by the clock (train.valid_every_minutes) at
the same seconds of training as every other trial; the tuner reads its metrics.jsonl as it grows, reports each
validation to the trial at its mark's second, and stops the run when the pruner says so at a rung.

Time, not updates, is the resource: settings that make more or fewer updates a second (a model's size, the batch)
are compared at equal minutes of training, which is what the budget buys. The run is stopped with SIGINT, the
signal on which training finishes its update, saves last.pt and exits 130 (training/interrupt.py); it runs in its
own session, so that a Ctrl-C at the terminal reaches the tuner alone, which then stops the run the same way.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from seq2seq.tools.tune_space import as_overrides
from seq2seq.training.metrics import read_metrics
from seq2seq.training.rundir import RunFiles
from seq2seq.training.schedule import Best

POLL_SECONDS = 0.5  # how often the run's metrics.jsonl is read: a validation is seconds of work at the least
STOP_GRACE_SECONDS = 120.0  # a stopped run ends its update (or its validation) and writes last.pt before it exits


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


@dataclass(frozen=True)
class Rungs:
    """When a trial validates and when the pruner judges it, in seconds of training: the trial validates every
    `interval` (train.valid_every_minutes, a ninth of its minutes), and the pruner asks at the marks `at` (1 and 3:
    a ninth and a third of the trial, successive halving's rungs for a reduction factor of 3). Every trial validates
    at the same seconds, so each rung compares all trials at the same second of training."""

    interval: float  # seconds between validations
    at: tuple[int, ...] = (1, 3)  # the marks (multiples of `interval`) that are rungs

    @classmethod
    def for_minutes(cls, minutes: float, marks: int = 9) -> "Rungs":
        return cls(minutes * 60 / marks)

    def mark(self, elapsed: float) -> int:
        """The mark a validation at `elapsed` seconds was made for: the last multiple of the interval it passed."""
        return math.floor(elapsed / self.interval + 1e-9)

    def step(self, mark: int) -> int:
        """The step a mark is reported at: its milliseconds of training (Optuna's steps are integers, and the marks of
        a short trial are fractions of a second apart)."""
        return int(round(mark * self.interval * 1000))

    @property
    def steps(self) -> tuple[int, ...]:
        """The rungs' steps (milliseconds of training)."""
        return tuple(self.step(m) for m in self.at)


class Reporter:
    """Reports a run's validations to its Optuna trial and asks `judge` at each rung whether to stop it.

    The value reported is the best score of `metric` so far, not the last one, so that a rung compares what each
    trial had reached by then, as the trial's final value (its best) does. The step is the mark's milliseconds (every
    trial reports the same steps); a mark already reported is skipped. A rung is judged at the first mark at or
    past it, the last rung included, against the other trials' scores at the rung's own step (where a validation
    slower than the interval skipped the rung's mark, the trial's score comes from the next one: up to one interval
    more training than the others had there); the trial's end is no rung (its final value is its best).
    `judge(step, value)` says True to stop it.
    """

    def __init__(self, trial: Any, metric: str, rungs: Rungs, judge: Callable[[int, float], bool] | None = None):
        self.trial, self.metric, self.key, self.rungs, self.judge = trial, metric, f"val_{metric}", rungs, judge
        self.kept = Best(metric)  # the trial's best so far, what it reports (`best`)
        self.seconds, self.updates = 0.0, 0
        self.validations = 0  # validation records taken so far
        self.reported: int | None = None  # the last mark reported
        self.judged = 0  # rungs judged so far

    @property
    def best(self) -> float | None:
        return self.kept.score

    def score(self, record: dict[str, Any]) -> float | None:
        """A record's score of the metric (None: not a validation). With train.ema_decay a validation scores the
        moving average too (`val_ema_<metric>`), and the better of the two is what best.pt holds."""
        better = Best(self.metric)
        for key in (self.key, f"val_ema_{self.metric}"):
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                better.update(float(value))
        return better.score

    def feed(self, records: Sequence[dict[str, Any]]) -> bool:
        """Take the run's records (all of them, as read_metrics returns them); True when the pruner says stop."""
        if records:
            self.updates = max(r["step"] for r in records)
            self.seconds = max(float(r.get("elapsed") or 0.0) for r in records)
        scored = [(r, score) for r in records if (score := self.score(r)) is not None]
        prune = False
        for record, score in scored[self.validations :]:
            self.kept.update(score)
            mark = self.rungs.mark(float(record.get("elapsed") or 0.0))
            if prune or (self.reported is not None and mark <= self.reported):
                continue
            assert self.best is not None
            step = self.rungs.step(mark)
            self.trial.report(self.best, step)
            self.reported = mark
            if self.judged < len(self.rungs.at) and mark >= self.rungs.at[self.judged]:  # a rung
                while self.judged < len(self.rungs.at) and mark >= self.rungs.at[self.judged]:
                    rung, self.judged = self.rungs.at[self.judged], self.judged + 1
                prune = self.judge is not None and self.judge(self.rungs.step(rung), self.best)
        self.validations = len(scored)
        return prune


def train_command(
    config: Path, overrides: Sequence[str], settings: dict[str, Any], run_dir: Path, minutes: float, rungs: Rungs,
) -> list[str]:
    """`python -m seq2seq train` for one trial: the base config and overrides, the trial's settings, its run
    directory and minutes, and validations by the clock at the rungs' interval (later --set win: the trial's own keys
    override the user's)."""
    own = {"train.run_dir": str(run_dir), "train.max_time": minutes, "train.valid_every": 0,
           "train.valid_every_minutes": rungs.interval / 60}
    keys = [*overrides, *as_overrides(settings), *as_overrides(own)]
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


def run_trial(
    trial: Any, command: list[str], run_dir: Path, metric: str, rungs: Rungs, judge: Callable[[int, float], bool], passed: int = 0,
) -> Outcome:
    """Train one trial's run in a subprocess, reporting its validations to `trial` and stopping it when `judge` says
    so at a rung (`passed`: rungs the run, resumed, has passed already); an interrupt of the tuner
    (KeyboardInterrupt) stops the run as pruning does and is raised again."""
    files = RunFiles(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    reporter = Reporter(trial, metric, rungs, judge)
    reporter.judged = passed
    started = time.monotonic()
    with open(files.stderr, "ab" if passed else "wb") as err:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        try:
            pruned = watch(proc, files.metrics, reporter)
        except BaseException:
            stop(proc)
            raise
    figures = dict(value=reporter.best, seconds=reporter.seconds, updates=reporter.updates, wall=time.monotonic() - started)
    if pruned:
        return Outcome("pruned", pruned_at=(reporter.reported or 0) * rungs.interval, **figures)
    if proc.returncode != 0:
        return Outcome("failed", error=last_line(files.stderr) or f"exit code {proc.returncode}", **figures)
    if reporter.best is None:
        return Outcome("failed", error=f"no validation score val_{metric} in {files.metrics}", **figures)
    return Outcome("complete", **figures)
