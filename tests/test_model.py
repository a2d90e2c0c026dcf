"""Every model option runs forward and backward; the model learns a tiny task."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from seq2seq.data import collate, pad
from seq2seq.loss import masked_nll
from seq2seq.model import count_parameters
from seq2seq.search import greedy_search
from tests.conftest import random_examples, tiny_model

COMBOS = list(itertools.product(["bahdanau", "luong"], [True, False], [1, 2], [False, True]))


@pytest.mark.parametrize("attention, bidirectional, layers, tie", COMBOS)
@pytest.mark.parametrize("tf_ratio", [1.0, 0.5])
def test_every_option_runs_forward_and_backward(attention, bidirectional, layers, tie, tf_ratio):
    model = tiny_model(
        0, attention=attention, bidirectional=bidirectional, enc_layers=layers, dec_layers=layers,
        tie_embeddings=tie, dropout=0.2,
    ).train()
    b = collate(random_examples(5, 1))
    logits = model(b.src, b.src_lengths, b.tgt_in, teacher_forcing_ratio=tf_ratio)
    assert logits.shape == (*b.tgt_in.shape, model.output.out_features)
    loss_sum, n = masked_nll(logits, b.tgt_out, label_smoothing=0.1)
    (loss_sum / n).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if tie:
        assert model.output.weight is model.decoder.embed.weight


def test_teacher_forcing_ratio_below_one_feeds_predictions():
    model = tiny_model(1, attention="luong")
    b = collate(random_examples(4, 2))
    torch.manual_seed(0)
    forced = model(b.src, b.src_lengths, b.tgt_in, teacher_forcing_ratio=1.0)
    stepwise_gold = model(b.src, b.src_lengths, b.tgt_in, teacher_forcing_ratio=1.0 - 1e-9)
    assert torch.allclose(forced, stepwise_gold, atol=1e-5)  # the step loop equals the one-call GRU path
    free = model(b.src, b.src_lengths, b.tgt_in, teacher_forcing_ratio=0.0)
    assert not torch.allclose(forced[:, 1:], free[:, 1:])


def test_label_smoothing_ignores_pads():
    model = tiny_model(2)
    b = collate(random_examples(6, 3))
    logits = model(b.src, b.src_lengths, b.tgt_in)
    with torch.no_grad():
        noisy = logits.clone()
        noisy[b.tgt_out == 0] = torch.randn_like(noisy[b.tgt_out == 0]) * 100  # garbage at pad positions
    for ls in (0.0, 0.1):
        assert torch.allclose(masked_nll(logits, b.tgt_out, ls)[0], masked_nll(noisy, b.tgt_out, ls)[0])


@pytest.mark.parametrize("attention", ["luong", "bahdanau"])
def test_learns_to_reverse_sequences(attention):
    torch.manual_seed(0)
    rng = random.Random(0)
    vocab = 12

    def sample(n):
        out = []
        for _ in range(n):
            seq = [rng.randrange(4, vocab) for _ in range(rng.randint(2, 6))]
            out.append((seq + [3], seq[::-1]))
        return out

    model = tiny_model(0, vocab=vocab, attention=attention, emb_size=32, hidden_size=64).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(600):
        b = collate(sample(32))
        loss_sum, n = masked_nll(model(b.src, b.src_lengths, b.tgt_in), b.tgt_out)
        optimizer.zero_grad()
        (loss_sum / n).backward()
        optimizer.step()
    model.eval()
    test = sample(100)
    src, lengths = pad([s for s, _ in test])
    hyps = greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=2)
    exact = sum(h.ids == t for h, (_, t) in zip(hyps, test))
    assert exact == 100, f"{exact}/100 reversed exactly"
    assert count_parameters(model) > 0
