"""The masked loss: summed token NLL over real target tokens; divide by their count to report per token."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seq2seq.vocab import PAD


def masked_nll(logits: torch.Tensor, tgt_out: torch.Tensor, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """logits (B, T, V), tgt_out (B, T) with PAD at pads -> (summed loss over real tokens, number of real tokens).

    Pads contribute nothing, label smoothing included; computed in fp32 whatever the logits' dtype.
    The per-token loss is `loss_sum / n_tokens`.
    """
    assert logits.shape[:2] == tgt_out.shape, (logits.shape, tgt_out.shape)
    loss_sum = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),  # (B*T, V)
        tgt_out.reshape(-1),
        ignore_index=PAD,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    return loss_sum, int((tgt_out != PAD).sum())
