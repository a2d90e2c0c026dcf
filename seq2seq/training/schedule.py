"""What changes over training time: the learning-rate schedule and early stopping, both driven by the validation
score of `train.metric` (higher is better, except for the error rates cer and wer).

Each keeps its state in a plain dict (`state_dict` / `load_state_dict`) that goes into the checkpoint, so that a
resumed run continues the same curve (its horizon included) and the same patience count.
"""

from __future__ import annotations

import math
from typing import Any

from seq2seq.config import TrainConfig, choices
from seq2seq.errors import ConfigError

SCHEDULES = choices("train", "schedule")  # config.py holds the choices
LOWER_IS_BETTER = ("cer", "wer")  # error rates; every other train.metric is better higher


def improves(score: float, best: float | None, metric: str) -> bool:
    """Is `score` better than `best` (None: nothing yet, so yes) for `metric`?"""
    if best is None:
        return True
    return score < best if metric in LOWER_IS_BETTER else score > best


class Patience:
    """Counts validations since the metric last improved (the first value always improves)."""

    def __init__(self, metric: str = "bleu") -> None:
        self.metric = metric
        self.best: float | None = None
        self.bad: int = 0  # validations in a row without improvement

    def update(self, metric: float) -> bool:
        """Record one validation; True when it improved on the best so far."""
        if improves(metric, self.best, self.metric):
            self.best, self.bad = metric, 0
            return True
        self.bad += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad = state["best"], int(state["bad"])


class EarlyStopping:
    """Stop once `patience` validations in a row brought no better metric (patience None: never)."""

    def __init__(self, patience: int | None, metric: str = "bleu"):
        self.patience = patience
        self.counter = Patience(metric)

    def update(self, metric: float) -> None:
        """Record one validation (`stopped` tells whether training should stop now)."""
        self.counter.update(metric)

    @property
    def stopped(self) -> bool:
        return self.patience is not None and self.counter.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return self.counter.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counter.load_state_dict(state)


class LRSchedule:
    """The learning rate for update `step` (1-based): linear warmup over `warmup_steps`, then the schedule's curve.

    constant: lr. plateau: lr * scale, the scale multiplied by `factor` (floored at min_lr) after `patience`
    validations without a better score. warmup_inverse_sqrt: lr * sqrt(warmup_steps / step).
    warmup_cosine: from lr down to min_lr along half a cosine between warmup_steps and decay_steps, then min_lr.
    `decay_steps` (the horizon) is saved with the state: a resumed run keeps the curve it started on, even when
    train.epochs or train.max_steps, from which the horizon was planned, changed.
    """

    def __init__(
        self, kind: str, lr: float, warmup_steps: int, min_lr: float, factor: float, patience: int, decay_steps: int | None,
        metric: str = "bleu",
    ):
        if kind not in SCHEDULES:
            raise ConfigError(f"train.schedule: {kind!r} is not one of {', '.join(SCHEDULES)}")
        if kind == "warmup_inverse_sqrt" and warmup_steps < 1:
            raise ConfigError("train.warmup_steps: warmup_inverse_sqrt needs at least 1 warmup step")
        if kind == "warmup_cosine" and (decay_steps is None or decay_steps <= warmup_steps):
            raise ConfigError(
                f"train.decay_steps: warmup_cosine needs decay_steps ({decay_steps}) above warmup_steps ({warmup_steps})"
            )
        self.kind, self.lr, self.warmup_steps, self.min_lr = kind, lr, warmup_steps, min_lr
        self.factor, self.decay_steps = factor, decay_steps
        self.plateau = Patience(metric)
        self.patience = patience
        self.scale = 1.0  # plateau only: product of the reductions so far

    @classmethod
    def from_config(cls, t: TrainConfig, default_decay_steps: int) -> "LRSchedule":
        """`default_decay_steps` is the planned number of updates, used when train.decay_steps is unset."""
        return cls(
            t.schedule, t.lr, t.warmup_steps, t.min_lr, t.plateau_factor, t.plateau_patience,
            t.decay_steps or default_decay_steps, t.metric,
        )

    def lr_at(self, step: int) -> float:
        """Learning rate of update `step` (1-based)."""
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        if self.kind == "constant":
            return self.lr * warm
        if self.kind == "plateau":
            return max(self.lr * self.scale, self.min_lr) * warm
        if self.kind == "warmup_inverse_sqrt":
            return self.lr * min(warm, math.sqrt(self.warmup_steps / max(step, 1)))
        assert self.decay_steps is not None
        progress = min(1.0, max(0.0, (step - self.warmup_steps) / (self.decay_steps - self.warmup_steps)))
        cosine = self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return cosine * warm

    def on_validation(self, metric: float) -> bool:
        """Record a validation score; True when the plateau schedule lowered the learning rate."""
        if self.kind != "plateau":
            return False
        self.plateau.update(metric)
        if self.plateau.bad >= self.patience and self.lr * self.scale > self.min_lr:
            self.scale *= self.factor
            self.plateau.bad = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "scale": self.scale, "plateau": self.plateau.state_dict(), "decay_steps": self.decay_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        if state.get("decay_steps") is not None:
            self.decay_steps = int(state["decay_steps"])
        self.plateau.load_state_dict(state["plateau"])
