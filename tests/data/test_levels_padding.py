"""The padding promises of tests/test_padding.py on real text at every tokenization level (and one mixed pair of
sides): each level gives other lengths and so other padding, and none of it may change a loss, a gradient or a
translation. tests/test_padding.py covers every decoder path on random ids; here one path, every level."""

from __future__ import annotations

import pytest
import torch

from seq2seq.config import DataConfig, DecodeConfig, ModelConfig
from seq2seq.data.batch import collate, pad
from seq2seq.data.encoding import Encoder, encode_pairs
from seq2seq.data.subword import train_tokenizers
from seq2seq.data.tokenizer import SUBWORD_LEVELS, plain_tokenizers
from seq2seq.data.vocab import build_vocabs
from seq2seq.decode import search
from seq2seq.decode.torch_backend import TorchBackend
from seq2seq.model.loss import masked_nll
from seq2seq.model.network import Seq2Seq
from tests.conftest import toy_pairs

LEVELS = [("word", "word"), ("char", "char"), ("space", "space"), ("bpe", "bpe"), ("unigram", "unigram"), ("char", "space")]


@pytest.fixture(scope="module", params=LEVELS, ids=[f"{s}-{t}" for s, t in LEVELS])
def encoded(request: pytest.FixtureRequest) -> tuple[Seq2Seq, list]:
    """A tiny model over the vocabularies of 300 toy pairs at one pair of levels, and 7 of those pairs encoded."""
    src_level, tgt_level = request.param
    d = DataConfig(src_level=src_level, tgt_level=tgt_level, vocab_size=400)
    pairs = toy_pairs("train", 300)
    src_tok, tgt_tok = train_tokenizers(d, pairs) if {src_level, tgt_level} & set(SUBWORD_LEVELS) else plain_tokenizers(d)
    src_vocab, tgt_vocab = build_vocabs(pairs, src_tok, 1, None, False, tgt_tokenizer=tgt_tok)
    examples = encode_pairs(pairs[:7], Encoder(src_tok, src_vocab), Encoder(tgt_tok, tgt_vocab))
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(emb_size=12, hidden_size=16, dropout=0.0, attention="bahdanau"), len(src_vocab), len(tgt_vocab))
    return model.eval(), examples


def test_levels_give_real_padding(encoded) -> None:
    _, examples = encoded
    b = collate(examples)
    assert len(set(b.src_lengths.tolist())) > 1 and len(set(b.tgt_lengths.tolist())) > 1


@torch.no_grad()
def test_batch_loss_is_the_token_weighted_mean_of_single_losses(encoded) -> None:
    model, examples = encoded
    b = collate(examples)
    loss_sum, n = masked_nll(model(b.src, b.src_lengths, b.tgt_in), b.tgt_out)
    singles = []
    for ex in examples:
        one = collate([ex])
        singles.append(masked_nll(model(one.src, one.src_lengths, one.tgt_in), one.tgt_out))
    assert n == sum(k for _, k in singles)
    assert float(loss_sum) == pytest.approx(sum(float(s) for s, _ in singles), rel=1e-5)


def test_batch_gradient_is_the_sum_of_single_gradients(encoded) -> None:
    model, examples = encoded
    b = collate(examples)
    model.zero_grad()
    masked_nll(model(b.src, b.src_lengths, b.tgt_in), b.tgt_out)[0].backward()
    batched = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for ex in examples:
        one = collate([ex])
        masked_nll(model(one.src, one.src_lengths, one.tgt_in), one.tgt_out)[0].backward()
    for p, g in zip(model.parameters(), batched):
        assert torch.allclose(p.grad, g, atol=1e-5)
    model.zero_grad()


def test_greedy_and_beam_translations_are_the_same_alone_and_in_a_batch(encoded) -> None:
    model, examples = encoded
    backend = TorchBackend(model, torch.device("cpu"), "fp32")
    greedy_search = lambda src, lengths, cfg: search.greedy_search(backend, src.numpy(), lengths.numpy(), cfg)  # noqa: E731
    beam_search = lambda src, lengths, cfg, nbest: search.beam_search(backend, src.numpy(), lengths.numpy(), cfg, nbest)  # noqa: E731
    sources = [s for s, _ in examples]
    greedy = DecodeConfig(max_len_a=1.0, max_len_b=5)
    beam = DecodeConfig(beam_size=3, max_len_a=1.0, max_len_b=4)
    batch_greedy = greedy_search(*pad(sources), greedy)
    batch_beam = beam_search(*pad(sources), beam, nbest=2)
    for s, hyp, nbest in zip(sources, batch_greedy, batch_beam):
        alone = greedy_search(torch.tensor([s]), torch.tensor([len(s)]), greedy)[0]
        assert hyp.ids == alone.ids and hyp.score == pytest.approx(alone.score, abs=1e-4)
        alone_beam = beam_search(torch.tensor([s]), torch.tensor([len(s)]), beam, nbest=2)[0]
        assert [h.ids for h in alone_beam] == [h.ids for h in nbest]
        assert [h.score for h in alone_beam] == pytest.approx([h.score for h in nbest], abs=1e-4)
