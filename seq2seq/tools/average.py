"""Checkpoint averaging: the mean of several checkpoints' weights, as a new checkpoint that eval and translate load.

Training with `train.keep_best: k` keeps the k best validations as RUN_DIR/ckpt-STEP.pt; averaging them
usually scores a little above the single best one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import torch

from seq2seq.model.checkpoint import Checkpoint
from seq2seq.errors import CheckpointError
from seq2seq.runfiles import RunFiles


def kept_checkpoints(run_dir: Path) -> list[Path]:
    """The k best checkpoints a run kept (RUN_DIR/ckpt-STEP.pt), by step."""
    paths = RunFiles(run_dir).kept_files()
    if not paths:
        raise CheckpointError(f"{run_dir}: no ckpt-STEP.pt files to average; train with train.keep_best > 1 to keep them")
    return paths


def _same_model(first: Checkpoint, other: Checkpoint, where: Path) -> None:
    if first.config.model != other.config.model:
        raise CheckpointError(f"{where}: another model architecture than the first checkpoint; only one run's checkpoints can be averaged")
    for name, mine, theirs in (("src vocabulary", first.src_vocab, other.src_vocab), ("tgt vocabulary", first.tgt_vocab, other.tgt_vocab)):
        if mine != theirs:
            raise CheckpointError(f"{where}: another {name} than the first checkpoint")
    if first.weights.keys() != other.weights.keys():
        raise CheckpointError(f"{where}: other weight names than the first checkpoint")


def average_checkpoints(paths: Sequence[Path]) -> Checkpoint:
    """A checkpoint whose floating-point weights are the mean of those in `paths` (summed in float64).

    Config, vocabularies, tokenizers and step come from the first checkpoint (all must agree on model and
    vocabularies); other tensors must be equal. Training state and scores are left out: it decodes, it does not
    resume, and no validation chose it. `averaged_from` names the inputs.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    first = Checkpoint.read(paths[0]).decoding_only()
    sums = {name: t.double() if t.is_floating_point() else t for name, t in first.weights.items()}
    for path in paths[1:]:
        other = Checkpoint.read(path)
        _same_model(first, other, path)
        for name, tensor in other.weights.items():
            if tensor.shape != sums[name].shape:
                raise CheckpointError(f"{path}: weight {name} of shape {tuple(tensor.shape)}, the first checkpoint has {tuple(sums[name].shape)}")
            if tensor.is_floating_point():
                sums[name] += tensor.double()
            elif not torch.equal(tensor, sums[name]):
                raise CheckpointError(f"{path}: {name} differs from the first checkpoint and cannot be averaged")
        del other
    weights = {
        name: (t / len(paths)).to(first.weights[name].dtype) if t.is_floating_point() else t for name, t in sums.items()
    }
    return dataclasses.replace(first, weights=weights, scores=None, averaged_from=[str(p) for p in paths], path=None)
