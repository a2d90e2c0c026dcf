"""Checkpoint averaging: the mean of several checkpoints' weights, as a new checkpoint that eval and translate load.

Training with `train.keep_best: k` keeps the k best validations as RUN_DIR/ckpt-STEP.pt; averaging them
usually scores a little above the single best one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.errors import CheckpointError

DECODING_KEYS = ("config", "src_vocab", "tgt_vocab", "tokenizer", "tgt_tokenizer")


def kept_checkpoints(run_dir: Path) -> list[Path]:
    """The k best checkpoints a run kept (RUN_DIR/ckpt-STEP.pt), by step."""
    paths = [p for p in run_dir.glob("ckpt-*.pt") if p.stem[len("ckpt-") :].isdigit()]
    if not paths:
        raise CheckpointError(f"{run_dir}: no ckpt-STEP.pt files to average; train with train.keep_best > 1 to keep them")
    return sorted(paths, key=lambda p: int(p.stem[len("ckpt-") :]))


def _same_model(first: dict[str, Any], other: dict[str, Any], where: Path) -> None:
    if first["config"]["model"] != other["config"]["model"]:
        raise CheckpointError(f"{where}: another model architecture than the first checkpoint; only one run's checkpoints can be averaged")
    for key in ("src_vocab", "tgt_vocab"):
        if first[key] != other[key]:
            raise CheckpointError(f"{where}: another {key.replace('_', ' ')}ulary than the first checkpoint")
    if first["model"].keys() != other["model"].keys():
        raise CheckpointError(f"{where}: other weight names than the first checkpoint")


def average_checkpoints(paths: Sequence[Path]) -> dict[str, Any]:
    """A checkpoint whose floating-point weights are the mean of those in `paths` (summed in float64).

    Config, vocabularies and tokenizers come from the first checkpoint (all must agree on model and
    vocabularies); other tensors must be equal. Optimizer and progress are left out: it decodes, it does not resume.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    first = load_checkpoint(paths[0])
    sums = {name: t.double() if t.is_floating_point() else t for name, t in first["model"].items()}
    for path in paths[1:]:
        state = load_checkpoint(path)
        _same_model(first, state, path)
        for name, tensor in state["model"].items():
            if tensor.shape != sums[name].shape:
                raise CheckpointError(f"{path}: weight {name} of shape {tuple(tensor.shape)}, the first checkpoint has {tuple(sums[name].shape)}")
            if tensor.is_floating_point():
                sums[name] += tensor.double()
            elif not torch.equal(tensor, sums[name]):
                raise CheckpointError(f"{path}: {name} differs from the first checkpoint and cannot be averaged")
        del state
    model = {
        name: (t / len(paths)).to(first["model"][name].dtype) if t.is_floating_point() else t for name, t in sums.items()
    }
    return {
        **{key: first[key] for key in DECODING_KEYS if key in first},
        "model": model,
        "step": int(first["step"]),
        "averaged_from": [str(p) for p in paths],
    }
