"""Resuming a run from its last.pt, exactly: weights, optimizer, progress and RNG, after any crash.

A run may have been killed at any moment. What it wrote after its last checkpoint belongs to steps that
will be trained again, so it is dropped here (metrics records past the checkpoint's step, temporary files
of a write that never finished); everything else is checked against the checkpoint before it is trusted.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from seq2seq.checkpoint import atomic_write_text
from seq2seq.errors import CheckpointError
from seq2seq.vocab import Vocab

log = logging.getLogger("seq2seq")


def _load(target: Any, saved: Any, what: str, where: Path) -> None:
    """`target.load_state_dict(saved)`, its errors (many lines, internal names) turned into one line."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where}: the saved {what} state is missing or malformed")
    try:
        target.load_state_dict(saved)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        first = " ".join(str(e).strip().splitlines()[:2])[:300]
        raise CheckpointError(f"{where}: the saved {what} state does not fit this run: {first}") from None


def restore(
    state: Mapping[str, Any],
    where: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    set_rng: Callable[[dict[str, Any]], None],
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a checkpoint's training state into `model`, `optimizer`, the RNGs and each of `extras`.

    `extras` maps checkpoint keys to objects with `load_state_dict` (an LR scheduler, early stopping);
    one absent from the checkpoint keeps its fresh state. Returns the saved progress mapping.
    """
    for name, vocab in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab)):
        if state.get(name) != vocab.to_list():
            raise CheckpointError(
                f"{where}: its {name.replace('_', ' ')} differs from {name}.json in the run directory (was it edited?)"
            )
    for key in ("optimizer", "progress", "rng"):
        if key not in state:
            raise CheckpointError(f"{where}: not a training checkpoint (no {key} state); it can be used, not resumed")
    _load(model, state["model"], "model", where)
    _load(optimizer, state["optimizer"], "optimizer", where)
    for key, target in (extras or {}).items():
        if key in state:
            _load(target, state[key], key, where)
    progress = state["progress"]
    if not isinstance(progress, dict) or not all(isinstance(v, (int, float)) for v in progress.values()):
        raise CheckpointError(f"{where}: the saved progress is malformed")
    try:
        set_rng(state["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{where}: the saved random-generator state is malformed ({type(e).__name__})") from None
    return dict(progress)


def trim_metrics(path: Path, step: int) -> int:
    """Drop the records of `path` (JSON lines) past `step`, and any torn line; returns how many went.

    They were written by the crashed session after its last checkpoint and are about to be written again.
    """
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step and line.endswith("\n"):
            kept.append(line)
    dropped = len(lines) - len(kept)
    if dropped:
        atomic_write_text(path, "".join(kept))
        log.info("%s: dropped %d records written after step %d", path, dropped, step)
    return dropped
