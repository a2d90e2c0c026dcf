"""The masked loss: summed token NLL over real target tokens; divide by their count to report per token."""

from __future__ import annotations

import torch

from seq2seq.data.vocab import PAD


def masked_nll(logits: torch.Tensor, tgt_out: torch.Tensor, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """logits (B, T, V), tgt_out (B, T) with PAD at pads -> (summed loss over real tokens, number of real tokens).

    Pads contribute nothing, label smoothing included; computed in fp32 whatever the logits' dtype.
    The per-token loss is `loss_sum / n_tokens`. Same value and gradient as
    F.cross_entropy(logits.float(), tgt_out, ignore_index=PAD, reduction="sum", label_smoothing=...),
    in fewer passes over the (tokens x vocabulary) logits and without keeping an fp32 copy for the backward.
    """
    assert logits.shape[:2] == tgt_out.shape, (logits.shape, tgt_out.shape)
    loss_sum = _SmoothedNLL.apply(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1), label_smoothing)
    return loss_sum, int((tgt_out != PAD).sum())


class _SmoothedNLL(torch.autograd.Function):
    """sum over real tokens i of  lse_i - (1 - eps) x_{i,y_i} - eps * mean_v x_{i,v}   (x: logits (N, V), fp32 math).

    Its gradient per real token is softmax(x_i) - (1 - eps) onehot(y_i) - eps / V, zero on pads."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        x = logits.to(_math_dtype(logits))  # (N, V); a copy only when the logits are bf16
        lse = torch.logsumexp(x, dim=-1)  # (N,)
        real = target != PAD  # (N,)
        gold = x.gather(1, target[:, None]).squeeze(1)  # (N,)
        per_token = lse - (1.0 - eps) * gold
        if eps > 0:
            per_token = per_token - eps * x.mean(dim=-1)
        ctx.save_for_backward(logits, target, lse, real)
        ctx.eps = eps
        return torch.where(real, per_token, 0.0).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        logits, target, lse, real = ctx.saved_tensors
        eps, vocab = ctx.eps, logits.size(-1)
        g = torch.sub(logits.to(lse.dtype), lse[:, None]).exp_()  # softmax (N, V), a new tensor
        if eps > 0:
            g.sub_(eps / vocab)
        g.scatter_add_(1, target[:, None], g.new_full((target.numel(), 1), eps - 1.0))
        g.mul_((real * grad)[:, None])
        return g.to(logits.dtype), None, None


def _math_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
