"""The masked loss: pads contribute nothing (label smoothing included), and the fused loss is cross-entropy's
value and gradient in every dtype."""

from __future__ import annotations

import pytest
import torch

from seq2seq.data.batch import collate
from seq2seq.model.loss import masked_nll
from tests.conftest import random_examples, tiny_model


def test_label_smoothing_ignores_pads():
    model = tiny_model(2)
    b = collate(random_examples(6, 3))
    logits = model(b.src, b.src_lengths, b.tgt_in)
    with torch.no_grad():
        noisy = logits.clone()
        noisy[b.tgt_out == 0] = torch.randn_like(noisy[b.tgt_out == 0]) * 100  # garbage at pad positions
    for ls in (0.0, 0.1):
        assert torch.allclose(masked_nll(logits, b.tgt_out, ls)[0], masked_nll(noisy, b.tgt_out, ls)[0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_fused_masked_loss_matches_cross_entropy(dtype, eps):
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(3)
    logits = (3 * torch.randn(3, 5, 11, generator=gen)).to(dtype).requires_grad_(True)
    before = logits.detach().clone()
    tgt = torch.randint(1, 11, (3, 5), generator=gen)
    tgt[0, 3:], tgt[2, 1:] = 0, 0  # pads
    fused, n = masked_nll(logits, tgt, eps)
    (g_fused,) = torch.autograd.grad(0.7 * fused, logits)
    ref_in = logits if dtype != torch.bfloat16 else logits.float()
    ref = F.cross_entropy(ref_in.reshape(-1, 11), tgt.reshape(-1), ignore_index=0, reduction="sum", label_smoothing=eps)
    (g_ref,) = torch.autograd.grad(0.7 * ref, logits)
    assert n == 9 and fused.dtype == ref.dtype
    assert torch.allclose(fused, ref, rtol=1e-6) and torch.equal(logits.detach(), before)
    assert g_fused.dtype == dtype and torch.allclose(g_fused.double(), g_ref.double(), atol=1e-6)
    assert g_fused[2, 1:].abs().sum() == 0  # nothing reaches a pad
