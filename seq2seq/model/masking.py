"""The source pad mask: made from the lengths and applied to attention scores, each in one function.

Both decoder loops attend through `masked_softmax`: the reference (`seq2seq.model.network.attend`) and the fast
Bahdanau loop (`seq2seq.model.fast_bahdanau`), which computes its scores its own way. Shapes: B batch, Tq
queries, S source length.
"""

from __future__ import annotations

import torch


def make_src_pad_mask(src_lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, S) bool mask, True on padding, from lengths (B,)."""
    positions = torch.arange(max_len, device=src_lengths.device)
    mask = positions[None, :] >= src_lengths[:, None]  # (B, S)
    assert mask.shape == (src_lengths.size(0), max_len)
    return mask


def masked_softmax(scores: torch.Tensor, src_pad_mask: torch.Tensor) -> torch.Tensor:
    """scores (B, Tq, S), src_pad_mask (B, S) True on pads -> attention weights (B, Tq, S), in fp32 (or fp64).

    The one place the mask is applied: weights on pads are exactly 0 (masked with -inf before the softmax;
    every source holds at least its <eos>, so no row is all -inf).
    """
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))  # bf16 -> fp32 for the softmax
    scores = scores.masked_fill(src_pad_mask[:, None, :], float("-inf"))  # (B, Tq, S)
    return torch.softmax(scores, dim=-1)
