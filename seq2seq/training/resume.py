"""Resuming a run from its last.pt, exactly: weights, optimizer, progress and the random generators (every rank's
under DDP), after any crash.

A run may have been killed at any moment. What it wrote after its last checkpoint belongs to steps that
will be trained again and is dropped (metrics records past the checkpoint's step: `metrics.MetricsLogger`;
temporary files of a write that never finished: `files.remove_stale_temp_files`). Everything else
is checked against the checkpoint before it is trusted.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from seq2seq.config import Config, TrainConfig
from seq2seq.model.checkpoint import RESUME_KEYS, Checkpoint
from seq2seq.errors import CheckpointError
from seq2seq.data.vocab import Vocab
from seq2seq.runfiles import RunFiles
from seq2seq.training import distributed
from seq2seq.training.schedule import HORIZON_KINDS, Best, EarlyStopping, LRSchedule

if TYPE_CHECKING:
    from seq2seq.model.network import Seq2Seq
    from seq2seq.training.build import Data, Machine
    from seq2seq.training.ema import EMA

log = logging.getLogger("seq2seq")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so that a resume continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    best: Best = field(default_factory=lambda: Best(TrainConfig().metric))  # the best score (saved as metric, best_score)
    elapsed: float = 0.0  # seconds of training, over all sessions of this run
    world_size: int = 1  # processes that trained it (`step` counts their joint updates)
    bad_steps: int = 0  # non-finite losses in a row, up to now
    validated_at: int = -1  # the step of the last validation
    tgt_tokens: int = 0  # real target tokens of the updates made (all ranks), for curves against data seen
    valid_seconds: float = 0.0  # of `elapsed`, the seconds spent validating (rank 0's), to plan under train.max_time
    validations: int = 0  # validations made
    warm_step: int = -1  # warmup's last update (-1: not reached), where train.max_time's pace is measured from,
    warm_elapsed: float = 0.0  # with `elapsed`
    warm_valid_seconds: float = 0.0  # and `valid_seconds` then

    @property
    def best_score(self) -> float | None:
        """The run's best validation score (None: no validation yet)."""
        return self.best.score

    @property
    def metric(self) -> str:
        """train.metric, which `best_score` is of."""
        return self.best.metric




def _load(target: Any, saved: Any, what: str, where: Path | None) -> None:
    """`target.load_state_dict(saved)`, its errors (many lines, internal names) turned into one line."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where}: the saved {what} state is missing or malformed")
    try:
        target.load_state_dict(saved)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        first = " ".join(str(e).strip().splitlines()[:2])[:300]
        raise CheckpointError(f"{where}: the saved {what} state does not fit this run: {first}") from None


def restore(
    ckpt: Checkpoint,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    set_rng: Callable[[dict[str, Any]], None],
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a checkpoint's training state into `model`, `optimizer`, the RNGs and each of `extras`.

    `extras` maps training-state keys to objects with `load_state_dict` (an LR scheduler, early stopping);
    one absent from the checkpoint keeps its fresh state. Returns the saved progress mapping.
    """
    where = ckpt.path
    for name, ours, theirs in (("src_vocab", src_vocab, ckpt.src_vocab), ("tgt_vocab", tgt_vocab, ckpt.tgt_vocab)):
        if theirs != ours:
            raise CheckpointError(
                f"{where}: its {name.replace('_', ' ')} differs from {name}.json in the run directory (was it edited?)"
            )
    training = ckpt.training
    for key in RESUME_KEYS:
        if key not in training:
            raise CheckpointError(f"{where}: not a training checkpoint (no {key} state); it can be used, not resumed")
    _load(model, ckpt.weights, "model", where)
    _load(optimizer, training["optimizer"], "optimizer", where)
    for key, target in (extras or {}).items():
        if key in training:
            _load(target, training[key], key, where)
    progress = training["progress"]
    if not isinstance(progress, dict) or not all(v is None or isinstance(v, (int, float, str)) for v in progress.values()):
        raise CheckpointError(f"{where}: the saved progress is malformed")
    try:
        set_rng(training["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{where}: the saved random-generator state is malformed ({type(e).__name__})") from None
    return dict(progress)


def rng_state() -> dict[str, Any]:
    """This process's random generators: Python's, torch's CPU one and, where present, CUDA's."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved (a checkpoint stores Python's state tuple as lists)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_state(
    cfg: Config, files: RunFiles, machine: Machine, data: Data, model: Seq2Seq, optimizer: torch.optim.Optimizer,
    schedule: LRSchedule, early: EarlyStopping, ema: EMA | None = None,
) -> tuple[Progress, list[dict[str, Any]]]:
    """Load last.pt into the model, optimizer, schedule, early stopping, the EMA and random generators; returns the
    progress and the k best so far. Every rank restores its own generators when the number of processes is the same."""
    t, dist = cfg.train, machine.dist
    ckpt = Checkpoint.read(files.last)
    ranks = ckpt.training.get("rng_ranks")
    exact = (len(ranks) if isinstance(ranks, list) else 1) == dist.world_size
    planned = schedule.decay_steps
    saved = restore(
        ckpt, model, optimizer, data.src_vocab, data.tgt_vocab,
        lambda rng: set_rng_state(ranks[dist.rank] if dist.enabled and exact else rng),  # type: ignore[index]
        extras={"schedule": schedule, "early_stopping": early, **({"ema": ema} if ema is not None else {})},
    )
    p = progress_from(saved, t.metric)
    p.batch_in_epoch = distributed.rescale_position(p.batch_in_epoch, p.world_size, dist.world_size)
    if not exact:  # other processes than saved: their generators cannot continue the saved ones
        distributed.seed_rank(t.seed, p.step, dist)
        log.info("%d process(es) resume a run of %d: random generators seeded afresh", dist.world_size, p.world_size)
    p.world_size = dist.world_size
    log.info("resumed %s at step %d (epoch %d, batch %d)", files.last, p.step, p.epoch + 1, p.batch_in_epoch)
    if schedule.kind in HORIZON_KINDS and planned is not None and schedule.decay_steps is not None and planned > schedule.decay_steps:
        log.info(
            "this run goes on past its learning-rate schedule (planned over %d updates): from update %d on the "
            "learning rate stays at train.min_lr %g", schedule.decay_steps, schedule.decay_steps + 1, t.min_lr,
        )
    return p, list(ckpt.training.get("kept_best", []))


def progress_state(p: Progress) -> dict[str, Any]:
    """The progress as the checkpoint keeps it: plain values, its best as `metric` and `best_score`."""
    saved = {f.name: getattr(p, f.name) for f in fields(p) if f.name != "best"}
    return {**saved, "metric": p.best.metric, "best_score": p.best.score}


def progress_from(saved: dict[str, Any], metric: str) -> Progress:
    """The saved progress; one written before train.metric had `best_bleu` (-1: none yet) and followed BLEU."""
    values = {k: v for k, v in saved.items() if k in Progress.__dataclass_fields__ and k != "best"}
    if "best_bleu" in saved and "best_score" not in saved:
        best = Best("bleu", saved["best_bleu"] if saved["best_bleu"] >= 0 else None)
    else:
        best = Best(saved.get("metric", metric), saved.get("best_score"))
    return Progress(**values, best=best)
