"""The fast Bahdanau loop computes what the reference loop computes: values and every gradient (fp64), under bf16
autocast too, and it is chosen only where it was measured to pay."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch

from seq2seq.data.batch import collate
from seq2seq.model import network
from seq2seq.model.fast_bahdanau import bahdanau_steps
from seq2seq.model.quantize import quantize_for_decoding
from tests.conftest import random_examples, tiny_model


# (decoder layers, bidirectional encoder, tied embeddings): every branch of the fast loop
FAST_CASES = list(itertools.product([1, 2], [True, False], [False, True]))


def _pass(model, b, fast: bool):
    """Teacher-forced pre-output (B, T, O), last hidden (L, B, H), attention (B, T, S) and logits (B, T, V)."""
    enc = model.encode(b.src, b.src_lengths)
    pre, hidden, weights = model.decoder(b.tgt_in, enc, enc.hidden, loop=bahdanau_steps if fast else None)
    return pre, hidden, weights, model.output(pre)


@pytest.mark.parametrize("layers, bidirectional, tie", FAST_CASES)
def test_fast_bahdanau_loop_matches_the_reference_in_values_and_every_gradient(layers, bidirectional, tie):
    # fp64, so that any difference beyond rounding is a bug. The fast loop's weight gradients come from one
    # matmul over all steps (_StepWeights, _DeferredLinearGrad): a wrong deferred bias or weight gradient fails here.
    model = tiny_model(
        2, attention="bahdanau", dec_layers=layers, enc_layers=layers, bidirectional=bidirectional, tie_embeddings=tie
    ).double().train()  # dropout is 0: train mode only switches the training branches on
    b = collate(random_examples(6, 2))
    outputs, grads = [], []
    for fast in (False, True):
        model.zero_grad()
        out = _pass(model, b, fast)
        (out[-1].log_softmax(-1)[..., 3] * (b.tgt_out != 0)).sum().backward()
        outputs.append(out)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    for reference, fast in zip(*outputs):
        assert torch.allclose(fast, reference, atol=1e-12, rtol=1e-10)
    reference, fast = grads
    assert reference.keys() == fast.keys() == {n for n, p in model.named_parameters()}  # every parameter has one
    for name in reference:
        assert torch.allclose(fast[name], reference[name], atol=1e-12, rtol=1e-10), name


def test_fast_bahdanau_loop_matches_the_reference_under_bf16_autocast():
    # A setting `uses_fast_bahdanau` picks it for. bf16 rounds differently on the two paths, hence the loose tolerance.
    model = tiny_model(3, attention="bahdanau").train()
    b = collate(random_examples(5, 3))
    logits, grads = [], []
    for fast in (False, True):
        model.cfg = replace(model.cfg, bahdanau_loop="fast" if fast else "reference")
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(b.src, b.src_lengths, b.tgt_in)
        out.float().logsumexp(-1).sum().backward()
        logits.append(out.float())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(logits[0], logits[1], atol=0.05)
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    assert torch.cosine_similarity(grads[0], grads[1], dim=0) > 0.99


def test_step_weights_equal_per_step_linear_layers_and_refuse_misuse():
    from seq2seq.model.fast_bahdanau import _StepWeights

    gen = torch.Generator().manual_seed(0)
    T, B = 4, 3
    bias = torch.randn(5, dtype=torch.float64, generator=gen).requires_grad_(True)
    w1 = torch.randn(5, 2, dtype=torch.float64, generator=gen).requires_grad_(True)
    w2 = torch.randn(3, 2, dtype=torch.float64, generator=gen).requires_grad_(True)  # stacked below w1, no bias
    xs = torch.randn(T, B, 2, dtype=torch.float64, generator=gen).requires_grad_(True)
    g = torch.randn(T, B, 8, dtype=torch.float64, generator=gen)
    with _StepWeights(T, B, bias, w1, w2, dtype=torch.float64) as linear:
        ys = torch.stack([linear(t, xs[t]) for t in range(T)])  # (T, B, 8)
    fast = torch.autograd.grad(ys, (bias, w1, w2, xs), g)
    reference = torch.cat([torch.nn.functional.linear(xs, w1, bias), xs @ w2.t()], dim=-1)  # (T, B, 8)
    assert torch.allclose(ys, reference)
    for a, r in zip(fast, torch.autograd.grad(reference, (bias, w1, w2, xs), g)):
        assert torch.allclose(a, r, atol=1e-12)
    early = _StepWeights(T, B, bias, w1, dtype=torch.float64)  # backward before the block ended: an error, not a wrong gradient
    with pytest.raises(RuntimeError, match="before the step loop"):
        torch.stack([early(t, xs[t]) for t in range(T)]).sum().backward()
    with pytest.raises(AssertionError, match="out of order"), _StepWeights(T, B, bias, w1, dtype=torch.float64) as linear:
        linear(1, xs[1])
    with pytest.raises(AssertionError, match="3 of 4 steps"), _StepWeights(T, B, bias, w1, dtype=torch.float64) as linear:
        [linear(t, xs[t]) for t in range(3)]


def test_the_fast_loop_is_chosen_by_the_config_and_auto_only_where_it_was_measured_to_pay():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto = tiny_model(0, attention="bahdanau")
    assert auto.uses_fast_bahdanau(cpu) and not auto.uses_fast_bahdanau(cuda)
    for device in (cpu, cuda):
        assert tiny_model(0, attention="bahdanau", bahdanau_loop="fast").uses_fast_bahdanau(device)
        assert not tiny_model(0, attention="bahdanau", bahdanau_loop="reference").uses_fast_bahdanau(device)
        assert not tiny_model(0, attention="luong", bahdanau_loop="fast").uses_fast_bahdanau(device)  # one path
    int8 = quantize_for_decoding(tiny_model(0, attention="bahdanau", bahdanau_loop="fast"), "int8", cpu)
    assert not int8.uses_fast_bahdanau(cpu)  # no float nn.GRU weights for the fast loop to read


@pytest.mark.parametrize("setting, fast_calls", [("auto", 1), ("fast", 1), ("reference", 0)])
def test_teacher_forced_passes_run_the_loop_the_rule_picks_and_decoding_the_reference(monkeypatch, setting, fast_calls):
    """Training steps and the validation loss (both `Seq2Seq.forward`) follow `uses_fast_bahdanau`; decoding never
    takes the fast loop."""
    calls = []

    def counted(*args):
        calls.append(1)
        return bahdanau_steps(*args)

    monkeypatch.setattr(network, "bahdanau_steps", counted)
    model = tiny_model(4, attention="bahdanau", bahdanau_loop=setting)
    b = collate(random_examples(3, 4))
    model(b.src, b.src_lengths, b.tgt_in)
    assert len(calls) == fast_calls
    enc = model.encode(b.src, b.src_lengths)
    model.decode_step(b.tgt_in[:, 0], enc, enc.hidden)
    assert len(calls) == fast_calls
