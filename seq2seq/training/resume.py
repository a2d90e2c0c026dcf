"""Resuming a run from its last.pt, exactly: weights, optimizer, progress and the random generators (every rank's
under DDP), after any crash.

A run may have been killed at any moment. What it wrote after its last checkpoint belongs to steps that
will be trained again and is dropped (metrics records past the checkpoint's step: `metrics.MetricsLogger`;
temporary files of a write that never finished: `files.remove_stale_temp_files`). Everything else
is checked against the checkpoint before it is trusted.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from seq2seq.model.checkpoint import RESUME_KEYS, Checkpoint
from seq2seq.errors import CheckpointError
from seq2seq.data.vocab import Vocab


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
