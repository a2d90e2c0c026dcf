"""What changes over training time: the learning-rate schedule and early stopping, both driven by the validation
score of `train.metric` (higher is better, except for the error rates cer and wer), and the planning of a schedule's
horizon under a time budget.

Each keeps its state in a plain dict (`state_dict` / `load_state_dict`) that goes into the checkpoint, so that a
resumed run continues the same curve (its horizon included) and the same patience count.

The horizon under a time budget. warmup_cosine and wsd decay to min_lr at their horizon, the update `decay_steps`.
Without train.max_time it is known before the first update: max_steps, else epochs x batches per epoch. With
max_time (and decay_steps unset) it is the number of updates the budget holds, which only the run itself can
measure; a curve that ends before the budget wastes the rest at min_lr, one that ends after it stops mid-decay,
far from the low rate where the weights settle. So the horizon is planned once, from the pace measured after
warmup, then fixed and saved in the checkpoint (a resume keeps it; it is never re-planned from a noisier clock).
Until then the rate holds at its peak, which warmup reaches first.

When, for wsd (`LRSchedule.plan_due`): at the start of its decay, once (1 - train.decay_fraction) of the budget is
spent (or of the updates max_steps or epochs allow, when they end the run first). Its rate is flat until then, so
nothing is lost by waiting, and the pace is measured over the whole stable phase: on a shared 2-core VM the pace of
one minute differs from the next by 10-15%, and a plan made in the first minute of the German G2P recipe was 21%
short one run (warmup_cosine) and 29% long the next (wsd: 5,264 planned, 4,067 made, so its decay never began).
The decay then runs from that update to the horizon (`decay_start`).

When, for warmup_cosine (`plan_due`), whose curve bends from warmup's end on and so needs its horizon early: at the
first validation at or after the end of warmup, when one comes within PLAN_BY of the
budget; else at the first update at or after warmup's end once PLAN_BY of the budget has passed. Planning at a
validation measures what a validation costs, which a budget must pay for every train.valid_every updates (or every
epoch, or every train.valid_every_minutes): leaving it out plans too many updates when validations are slow (a large validation set decoded step by
step). Waiting longer for one would leave the rate at its peak for too large a share of the run and plan from
the first validation's time alone. PLAN_BY is a fifth: measured on the German G2P recipe (8 minutes, 2-core EPYC),
a plan at a tenth (48 s, 23 s after warmup) came out 21% short of the updates the run then made (3,481 planned,
4,424 made), from noise in so short a window and the slow start below; planned at a fifth, the cosine enters its
curve a few percent below the peak, which costs less than a decay that ends a fifth of the budget early.

How (`budget_horizon`): the seconds per update are the training seconds per update since warmup's end (`Pace`:
elapsed minus the validations' seconds, both counted from `Pace.since`), plus one validation's seconds divided by
the updates between validations. The updates of warmup are left out of the pace: the first ones of a run are slow
(allocation, kernels chosen per shape), 16-23% slower over the first 200 updates than over the rest in those runs,
and planning from them made the horizon short. One validation's seconds are the mean of those measured; before
any, an estimate: decoding a validation sentence costs
about what training on a sentence does (`validation_estimate`). The horizon is the updates made plus the seconds
left in the budget at that pace; then the fewest of that, max_steps and epochs x batches per epoch, whichever ends
the run first (and never within warmup). Under DDP rank 0 plans and every rank takes its horizon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from seq2seq.config import TrainConfig, choices
from seq2seq.errors import ConfigError
from seq2seq.metric import LOWER_IS_BETTER, improves  # the direction of train.metric (tools/tune imports them here)

SCHEDULES = choices("train", "schedule")  # config.py holds the choices
DECAY_SHAPES = choices("train", "decay_shape")
HORIZON_KINDS = ("warmup_cosine", "wsd")  # the schedules that decay to min_lr at a horizon
PLAN_BY = 0.2  # the share of train.max_time after which the horizon is planned without waiting for a validation


class Best:
    """The run's best validation score of train.metric (None: no validation yet), and the one answer to "did this
    validation improve on it?" that best.pt, early stopping, the plateau schedule and the k best follow. Its score
    travels in the checkpoint as the progress's `best_score` (training/resume)."""

    def __init__(self, metric: str, score: float | None = None) -> None:
        self.metric, self.score = metric, score

    def better(self, score: float, than: float | None) -> bool:
        """Is `score` better than `than` (None: nothing yet, so yes) for this metric?"""
        return improves(score, than, self.metric)

    def update(self, score: float) -> bool:
        """Record one validation; True when it improved on the best so far (the first always does)."""
        if not self.better(score, self.score):
            return False
        self.score = score
        return True

    def rank(self, score: float) -> float:
        """A sort key that puts the best score first."""
        return score if self.metric in LOWER_IS_BETTER else -score


class EarlyStopping:
    """Stop once `patience` validations in a row brought no better score (patience None: never); whether one did is
    `Best.update`'s answer."""

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.bad = 0  # validations in a row without improvement

    def update(self, improved: bool) -> None:
        """Record one validation (`stopped` tells whether training should stop now)."""
        self.bad = 0 if improved else self.bad + 1

    @property
    def stopped(self) -> bool:
        return self.patience is not None and self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bad = int(state["bad"])  # checkpoints before issue 33 kept the best beside it: Best has it now


class LRSchedule:
    """The learning rate for update `step` (1-based): linear warmup over `warmup_steps`, then the schedule's curve.

    constant: lr. plateau: lr * scale, the scale multiplied by `factor` (floored at min_lr) after `patience`
    validations without a better score. warmup_inverse_sqrt: lr * sqrt(warmup_steps / step).
    warmup_cosine: from lr down to min_lr along half a cosine between warmup_steps and decay_steps, then min_lr.
    wsd (warmup, stable, decay): lr until the last `decay_fraction` of decay_steps (never before warmup's end), then
    down to min_lr at decay_steps (`decay_shape`: a straight line, or 1 - sqrt of the decay's share), then min_lr.
    `decay_steps` (the horizon) is saved with the state: a resumed run keeps the curve it started on, even when
    train.epochs, max_steps or max_time, from which the horizon was planned, changed. `plan_later`: the horizon
    waits for `plan` (train.max_time; see the module docstring), the rate holding at lr till then, and
    `decay_steps` is the most it may be.
    """

    def __init__(
        self, kind: str, lr: float, warmup_steps: int, min_lr: float, factor: float, patience: int, decay_steps: int | None,
        decay_fraction: float = 0.2, plan_later: bool = False, decay_shape: str = "linear",
    ):
        if kind not in SCHEDULES:
            raise ConfigError(f"train.schedule: {kind!r} is not one of {', '.join(SCHEDULES)}")
        if kind == "warmup_inverse_sqrt" and warmup_steps < 1:
            raise ConfigError("train.warmup_steps: warmup_inverse_sqrt needs at least 1 warmup step")
        if kind in HORIZON_KINDS and (decay_steps is None or decay_steps <= warmup_steps):
            raise ConfigError(f"train.decay_steps: {kind} needs decay_steps ({decay_steps}) above warmup_steps ({warmup_steps})")
        if not 0.0 < decay_fraction <= 1.0:
            raise ConfigError(f"train.decay_fraction: must be in (0, 1], got {decay_fraction!r}")
        self.kind, self.lr, self.warmup_steps, self.min_lr = kind, lr, warmup_steps, min_lr
        if decay_shape not in DECAY_SHAPES:
            raise ConfigError(f"train.decay_shape: {decay_shape!r} is not one of {', '.join(DECAY_SHAPES)}")
        self.factor, self.decay_fraction, self.decay_shape = factor, decay_fraction, decay_shape
        self.ceiling = decay_steps  # the most a planned horizon may be: max_steps or epochs x batches per epoch
        self.decay_steps = None if plan_later and kind in HORIZON_KINDS else decay_steps
        self.decay_start: int | None = None  # wsd planned under a budget: the update its decay starts after
        self.patience = patience
        self.plateau_bad = 0  # plateau only: validations without improvement since the rate was last lowered
        self.scale = 1.0  # plateau only: product of the reductions so far

    @classmethod
    def from_config(cls, t: TrainConfig, default_decay_steps: int) -> "LRSchedule":
        """`default_decay_steps` is the planned number of updates, used when train.decay_steps is unset; under
        train.max_time the horizon is planned later, from the measured pace, and this is its ceiling."""
        return cls(
            t.schedule, t.lr, t.warmup_steps, t.min_lr, t.plateau_factor, t.plateau_patience,
            t.decay_steps or default_decay_steps, t.decay_fraction,
            plan_later=t.max_time is not None and t.decay_steps is None, decay_shape=t.decay_shape,
        )

    @property
    def pending(self) -> bool:
        """The horizon is still to be planned (the rate holds at its peak after warmup till then)."""
        return self.kind in HORIZON_KINDS and self.decay_steps is None

    def plan_due(self, pace: "Pace", validated_at: int, budget_s: float) -> bool:
        """Is it time to plan the horizon under a budget of `budget_s` seconds? wsd: at the start of its decay;
        warmup_cosine: early, by `plan_due` (the rules' why: the module docstring)."""
        if self.kind != "wsd":
            return plan_due(pace, self.warmup_steps, validated_at, budget_s)
        if pace.step < max(self.warmup_steps, 1):
            return False
        stable = 1.0 - self.decay_fraction
        return pace.elapsed >= stable * budget_s or (self.ceiling is not None and pace.step >= stable * self.ceiling)

    def plan(self, horizon: int, step: int = 0) -> int:
        """Fix the horizon at `horizon` updates, at most the ceiling and past warmup, `step` updates being made;
        returns the horizon fixed. wsd's decay starts no earlier than `step`: the rate never jumps."""
        assert self.ceiling is not None
        self.decay_steps = max(min(horizon, self.ceiling), self.warmup_steps + 1, step + 1)
        if self.kind == "wsd":
            self.decay_start = max(step, self.warmup_steps, int(self.decay_steps * (1.0 - self.decay_fraction)))
        return self.decay_steps

    def lr_at(self, step: int) -> float:
        """Learning rate of update `step` (1-based)."""
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        if self.kind == "constant" or self.pending:
            return self.lr * warm
        if self.kind == "plateau":
            return max(self.lr * self.scale, self.min_lr) * warm
        if self.kind == "warmup_inverse_sqrt":
            return self.lr * min(warm, math.sqrt(self.warmup_steps / max(step, 1)))
        assert self.decay_steps is not None
        if self.kind == "wsd":
            start = self.decay_start if self.decay_start is not None else max(
                float(self.warmup_steps), self.decay_steps * (1.0 - self.decay_fraction)
            )
            progress = min(1.0, max(0.0, (step - start) / (self.decay_steps - start)))
            if self.decay_shape == "1-sqrt":
                progress = math.sqrt(progress)
            return (self.lr - (self.lr - self.min_lr) * progress) * warm
        progress = min(1.0, max(0.0, (step - self.warmup_steps) / (self.decay_steps - self.warmup_steps)))
        cosine = self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return cosine * warm

    def on_validation(self, improved: bool) -> bool:
        """Record a validation (`improved`: `Best.update`'s answer); True when the plateau schedule lowered the rate."""
        if self.kind != "plateau":
            return False
        self.plateau_bad = 0 if improved else self.plateau_bad + 1
        if self.plateau_bad >= self.patience and self.lr * self.scale > self.min_lr:
            self.scale *= self.factor
            self.plateau_bad = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "scale": self.scale, "plateau": {"bad": self.plateau_bad}, "decay_steps": self.decay_steps,
            "decay_start": self.decay_start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The saved curve; a horizon saved as None (not planned yet) leaves this session's own."""
        self.scale = float(state["scale"])
        if state.get("decay_steps") is not None:
            self.decay_steps = int(state["decay_steps"])
            self.decay_start = None if state.get("decay_start") is None else int(state["decay_start"])
        self.plateau_bad = int(state["plateau"]["bad"])  # and, before issue 33, the best (Best has it now)


@dataclass(frozen=True)
class Pace:
    """How fast a run went: `step` updates in `elapsed` seconds, `valid_seconds` of them in `validations`; `since`:
    (step, elapsed, valid_seconds) at warmup's end, from which the pace is measured (None: from the start)."""

    step: int
    elapsed: float
    valid_seconds: float = 0.0
    validations: int = 0
    since: tuple[int, float, float] | None = None

    @property
    def seconds_per_update(self) -> float:
        """Training seconds per update since warmup's end (from the start when no update came after it), the
        validations left out."""
        step, elapsed, valid = self.since if self.since is not None and self.step > self.since[0] else (0, 0.0, 0.0)
        return max((self.elapsed - elapsed) - (self.valid_seconds - valid), 0.0) / max(self.step - step, 1)


def plan_due(pace: Pace, warmup_steps: int, validated_at: int, budget_s: float) -> bool:
    """Is it time to plan the horizon: past warmup, and a validation at or after its end (`validated_at`: the
    last validation's update, -1 none) or PLAN_BY of the budget spent? (The rule's why: the module docstring.)"""
    if pace.step < max(warmup_steps, 1):
        return False
    return validated_at >= warmup_steps or pace.elapsed >= PLAN_BY * budget_s


def validation_estimate(pace: Pace, valid_sentences: int, sentences_per_update: float) -> float:
    """Seconds of one validation before any was measured: decoding a sentence (greedily, with its loss) costs
    about what an update costs per sentence it trains on."""
    return pace.seconds_per_update * valid_sentences / max(sentences_per_update, 1e-9)


def validation_due(t: TrainConfig, step: int, before: float, after: float) -> bool:
    """Does update `step` end with a validation? Every train.valid_every updates, or, with train.valid_every_minutes,
    when the update took the training clock (seconds, validations included) from `before` past a multiple of the
    interval. `before` is the clock after the previous update and its validation, so a mark passed while validating
    is skipped (a validation slower than the interval never makes every update validate). The rule reads only the
    clock, which the checkpoint keeps (Progress.elapsed): a resumed run goes on to the next mark of the same series."""
    if t.valid_every_minutes is not None:
        interval = t.valid_every_minutes * 60
        return math.floor(after / interval) > math.floor(before / interval)
    return bool(t.valid_every) and step % t.valid_every == 0


def updates_between_validations(t: TrainConfig, pace: Pace, per_epoch: int, valid_seconds: float) -> float:
    """About how many updates come between two validations: train.valid_every, an epoch's batches, or under
    train.valid_every_minutes what the interval holds at the pace once a validation (`valid_seconds`, or the mean
    measured) has taken its share of it."""
    if t.valid_every_minutes is None:
        return float(t.valid_every or per_epoch)
    one = pace.valid_seconds / pace.validations if pace.validations else valid_seconds
    return max(t.valid_every_minutes * 60 - one, 0.0) / max(pace.seconds_per_update, 1e-9)


def budget_rate(pace: Pace, valid_interval: float, valid_seconds: float) -> float:
    """Updates per second, validations included: training seconds per update, plus one validation's
    `valid_seconds` (the mean measured when any was) per `valid_interval` updates."""
    one = pace.valid_seconds / pace.validations if pace.validations else valid_seconds
    return 1.0 / max(pace.seconds_per_update + one / max(valid_interval, 1.0), 1e-9)


def budget_horizon(pace: Pace, budget_s: float, rate: float) -> int:
    """The updates a budget of `budget_s` seconds holds: those made, plus the seconds left at `rate` (updates/s)."""
    return pace.step + int(max(budget_s - pace.elapsed, 0.0) * rate)


def planned_horizon(
    t: TrainConfig, pace: Pace, per_epoch: int, sentences_per_update: float, valid_sentences: int
) -> tuple[int, float]:
    """train.max_time's horizon from the pace so far: (the updates the budget holds, updates/s incl. validation).
    `per_epoch`: a rank's batches per epoch; `sentences_per_update`: the sentences a rank trains on per update."""
    assert t.max_time is not None
    estimate = validation_estimate(pace, valid_sentences, sentences_per_update)
    rate = budget_rate(pace, updates_between_validations(t, pace, per_epoch, estimate), estimate)
    return budget_horizon(pace, t.max_time * 60, rate), rate
