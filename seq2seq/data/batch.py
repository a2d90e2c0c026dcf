"""Ids to batches: collate (the shift, padding, lengths), bucketed batches; the ids come from data/encoding.

The shift between decoder input and labels happens in `collate` and nowhere else:
    tgt_in  = <bos> y1 .. yn
    tgt_out = y1 .. yn <eos>
"""

from __future__ import annotations

import random
from typing import NamedTuple, Sequence, TypeVar

import numpy as np
import torch

from seq2seq.data.encoding import Example  # text -> ids is data/encoding's (no torch: an export translates with it)
from seq2seq.data.vocab import BOS, EOS, PAD
from seq2seq.errors import DataError

# ---- batches ----------------------------------------------------------------------------------------------


class Batch(NamedTuple):
    """A padded batch on the CPU. Pad id is PAD everywhere; lengths count real tokens."""

    src: torch.Tensor  # (B, S) source ids, each row ending in <eos>
    src_lengths: torch.Tensor  # (B,)
    tgt_in: torch.Tensor  # (B, T) <bos> y1 .. yn
    tgt_out: torch.Tensor  # (B, T) y1 .. yn <eos>
    tgt_lengths: torch.Tensor  # (B,) decoder_steps(n) = n + 1

    def to(self, device: torch.device) -> "Batch":
        non_blocking = device.type == "cuda"
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self))


def pad(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id sequences with PAD. Returns ids (B, L) and lengths (B,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths


Steps = TypeVar("Steps", int, np.ndarray, torch.Tensor)


def decoder_steps(tgt_lengths: Steps) -> Steps:
    """Decoder steps for targets of `tgt_lengths` tokens (no specials): one more, as `collate` shifts them.

    The decoder reads `<bos> y1 .. yn` and predicts `y1 .. yn <eos>`: n + 1 steps, which is also the padded
    target length. An int, or lengths (N,) as a numpy array or tensor, alike.
    """
    return tgt_lengths + 1


def collate(examples: Sequence[Example]) -> Batch:
    """Pad a list of examples into a Batch; the one place where targets are shifted (see `decoder_steps`).

    Returns src (B, S), src_lengths (B,), tgt_in / tgt_out (B, T) and tgt_lengths (B,), T = max decoder steps.
    """
    src, src_lengths = pad([s for s, _ in examples])
    tgt_in, tgt_lengths = pad([[BOS] + t for _, t in examples])
    tgt_out, _ = pad([t + [EOS] for _, t in examples])
    return Batch(src, src_lengths, tgt_in, tgt_out, tgt_lengths)


class BucketSampler:
    """Length-bucketed batches of example indices, shuffled, deterministic for (seed, epoch).

    Examples are sorted by (target, source) length with random tie-breaking, cut into batches of
    `batch_size` sentences or, with `max_tokens`, of at most `max_tokens` padded tokens
    (sentences x the longer side's padded length); the batch order is then shuffled.

    With `world_size` > 1 (one sampler per rank under torchrun) every rank builds the same global list,
    cuts it to a multiple of `world_size` and takes batches `rank, rank + world_size, ...`: step k of
    the job consumes global batches k * world_size .. k * world_size + world_size - 1, one per rank.
    """

    def __init__(
        self,
        src_lengths: Sequence[int],
        tgt_lengths: Sequence[int],
        batch_size: int,
        max_tokens: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        # numpy arrays: 8 bytes an example, where lists of Python ints and sort keys took ~150 (5M pairs: 0.8 GB)
        self.src_lengths = np.asarray(src_lengths, dtype=np.int64)
        self.tgt_lengths = np.asarray(tgt_lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def batches(self, epoch: int = 0) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + epoch)
        n = len(self.src_lengths)
        if n == 0:
            return []
        noise = np.fromiter((rng.random() for _ in range(n)), dtype=np.float64, count=n)
        order = np.lexsort((noise, self.src_lengths, self.tgt_lengths))  # by target length, then source length, then noise
        if self.max_tokens is None:
            starts = list(range(0, n, self.batch_size))
        else:  # greedy: close a batch when one more sentence would pad it past max_tokens
            starts, count, longest = [0], 0, 0
            for j, size in enumerate(np.maximum(self.src_lengths, self.tgt_lengths)[order].tolist()):
                if count and (count + 1) * max(longest, size) > self.max_tokens:
                    starts.append(j)
                    count, longest = 0, 0
                count += 1
                longest = max(longest, size)
        batches: list[list[int]] = [part.tolist() for part in np.split(order, starts[1:])]
        rng.shuffle(batches)
        if self.world_size > 1:
            if len(batches) < self.world_size:
                raise DataError(f"the training data makes {len(batches)} batches, fewer than the {self.world_size} processes: use a smaller batch size")
            usable = len(batches) - len(batches) % self.world_size
            batches = batches[self.rank : usable : self.world_size]
        return batches


def example_lengths(examples: Sequence[Example]) -> tuple[list[int], list[int]]:
    """Padded lengths as collate will make them: source incl. <eos>, target the decoder steps (incl. <bos>/<eos>)."""
    return [len(s) for s, _ in examples], [decoder_steps(len(t)) for _, t in examples]
