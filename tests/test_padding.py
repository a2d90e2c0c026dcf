"""Padding changes nothing: loss, gradients, encoder states, attention and translations, on every decoder path
(the reference Bahdanau loop, the fast one, Luong), with label smoothing, with teacher forcing below 1, and for an
ensemble of two models (decode/ensemble) as for one.

Decoding reads neither label smoothing nor the teacher-forcing ratio (they exist only in training), so the
translation tests need no variant of either; with teacher forcing 0, the training pass itself decodes greedily
(each step is fed its own prediction), and is proven batch-invariant below with the rest. A lexicon (`--lexicon`,
issue 35) takes its known words out of the batch: the words left to the model decode as they would alone."""

from __future__ import annotations

import itertools

import pytest
import torch

from seq2seq.config import DecodeConfig
from seq2seq.data.batch import collate, pad
from seq2seq.decode import search
from seq2seq.decode.ensemble import Ensemble
from seq2seq.decode.torch_backend import TorchBackend
from seq2seq.model.fast_bahdanau import bahdanau_steps
from seq2seq.model.loss import masked_nll
from seq2seq.decode.translator import Translator
from tests.conftest import random_examples, tiny_model, toy_pairs

PATHS = {  # every decoder path: the reference Bahdanau loop, the fast one (seq2seq.model.fast_bahdanau), Luong
    "bahdanau": {"attention": "bahdanau", "bahdanau_loop": "reference"},
    "bahdanau-fast": {"attention": "bahdanau", "bahdanau_loop": "fast"},
    "luong": {"attention": "luong"},
}
VARIANTS = {
    "1layer-bi": {},
    "2layers-uni-tied": {"bidirectional": False, "enc_layers": 2, "dec_layers": 2, "tie_embeddings": True},
}
OPTIONS = [pytest.param({**PATHS[p], **VARIANTS[v]}, id=f"{p}-{v}") for p, v in itertools.product(PATHS, VARIANTS)]


def model_for(seed: int, options: dict):
    """A tiny model with `options`, its config (`bahdanau_loop` chooses the Bahdanau path of teacher-forced passes)."""
    return tiny_model(seed, **options)


def backend(*models):
    """The search's view of `models`: one model, or the ensemble of several."""
    members = [TorchBackend(m, torch.device("cpu"), "fp32") for m in models]
    return members[0] if len(members) == 1 else Ensemble(members)


def greedy_search(models, src, lengths, cfg):
    return search.greedy_search(backend(*models), src.numpy(), lengths.numpy(), cfg)


def beam_search(models, src, lengths, cfg, nbest):
    return search.beam_search(backend(*models), src.numpy(), lengths.numpy(), cfg, nbest)


ENSEMBLE = [pytest.param(False, id="one"), pytest.param(True, id="ensemble")]


def _single_losses(model, examples, label_smoothing=0.0):
    out = []
    for ex in examples:
        b = collate([ex])
        loss_sum, n = masked_nll(model(b.src, b.src_lengths, b.tgt_in), b.tgt_out, label_smoothing)
        out.append((loss_sum, n))
    return out


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@torch.no_grad()
def test_batch_loss_is_token_weighted_mean_of_single_losses(options, label_smoothing):
    model = model_for(0, options)
    examples = random_examples(7, 0)
    b = collate(examples)
    assert len(set(b.src_lengths.tolist())) > 1 and len(set(b.tgt_lengths.tolist())) > 1  # real padding
    loss_sum, n = masked_nll(model(b.src, b.src_lengths, b.tgt_in), b.tgt_out, label_smoothing)
    singles = _single_losses(model, examples, label_smoothing)
    assert n == sum(k for _, k in singles) == int(b.tgt_lengths.sum())
    weighted_mean = sum(float(s) for s, _ in singles) / n
    assert abs(float(loss_sum) / n - weighted_mean) <= 1e-5


def assert_same_gradients(batch_grads: dict, total: dict) -> None:
    assert batch_grads.keys() == total.keys()
    for k in batch_grads:
        scale = total[k].abs().max().clamp(min=1e-6)
        assert ((batch_grads[k] - total[k]).abs().max() / scale) <= 1e-4, k


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_batch_gradient_equals_sum_of_single_gradients(options, label_smoothing):
    model = model_for(3, options)
    examples = random_examples(6, 3)
    b = collate(examples)
    model.zero_grad()
    masked_nll(model(b.src, b.src_lengths, b.tgt_in), b.tgt_out, label_smoothing)[0].backward()
    batch_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    total = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for ex in examples:
        model.zero_grad()
        s = collate([ex])
        masked_nll(model(s.src, s.src_lengths, s.tgt_in), s.tgt_out, label_smoothing)[0].backward()
        for k, p in model.named_parameters():
            total[k] += p.grad
    assert_same_gradients(batch_grads, total)


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("ratio", [0.5, 0.0])
def test_teacher_forcing_below_one_padding_changes_no_loss_and_no_gradient(options, ratio):
    """teacher_forcing_ratio < 1, with label smoothing: the batch's loss and every gradient are the sums over its
    sentences, each decoded with no padding at all and with the very coins it drew in the batch.

    Seq2Seq.forward draws one coin per sentence and step (torch.rand(B) at each step but the last), so a
    sentence alone (B = 1) would draw other coins. A batch of B copies of sentence i holds no padding and, from
    the same seed, draws what the padded batch drew: rand(B) at every step, and the draws of the first steps do
    not depend on how many steps follow (the padded batch only draws more, after). Sentences never mix inside a
    batch, so row i of the copies is sentence i decoded alone with its coins. (Ratio 0: every coin says
    "prediction", whatever it shows; the pass decodes greedily. The fast Bahdanau loop serves ratio 1 only: with
    it set, this must still be the reference step loop, and is.)"""
    model = model_for(8, options)
    examples = random_examples(6, 8)
    b = collate(examples)
    label_smoothing, seed = 0.1, 1234
    torch.manual_seed(seed)
    logits = model(b.src, b.src_lengths, b.tgt_in, teacher_forcing_ratio=ratio)
    forced = model(b.src, b.src_lengths, b.tgt_in)  # ratio 1
    real = b.tgt_out != 0
    assert not torch.allclose(logits[real], forced[real], atol=1e-3)  # some step was fed a prediction: the coins mattered
    model.zero_grad()
    loss_sum, n = masked_nll(logits, b.tgt_out, label_smoothing)
    loss_sum.backward()
    batch_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    total = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    total_loss, total_n = 0.0, 0
    for i, ex in enumerate(examples):
        copies = collate([ex] * len(examples))
        assert (copies.src != 0).all() and (copies.tgt_out != 0).all()  # no padding anywhere
        torch.manual_seed(seed)
        row = model(copies.src, copies.src_lengths, copies.tgt_in, teacher_forcing_ratio=ratio)[i : i + 1]
        model.zero_grad()
        s, k = masked_nll(row, copies.tgt_out[i : i + 1], label_smoothing)
        s.backward()
        total_loss, total_n = total_loss + s.item(), total_n + k
        for name, p in model.named_parameters():
            total[name] += p.grad
    assert n == total_n
    assert abs(loss_sum.item() - total_loss) <= 1e-5 * total_loss
    assert_same_gradients(batch_grads, total)


@pytest.mark.parametrize("options", OPTIONS)
def test_encoder_states_unchanged_by_extra_padding(options):
    model = model_for(4, options)
    examples = random_examples(5, 4)
    src, lengths = pad([s for s, _ in examples])
    wider = torch.cat([src, torch.zeros(src.size(0), 6, dtype=torch.long)], dim=1)  # 6 extra pad columns
    with torch.no_grad():
        narrow_states, narrow_final = model.encoder(src, lengths)
        wide_states, wide_final = model.encoder(wider, lengths)
        for i, (s, _) in enumerate(examples):
            alone, alone_final = model.encoder(torch.tensor([s]), torch.tensor([len(s)]))
            assert torch.allclose(narrow_states[i, : len(s)], alone[0], atol=1e-6)
            assert torch.allclose(narrow_final[i], alone_final[0], atol=1e-6)
    assert torch.allclose(narrow_states, wide_states[:, : src.size(1)], atol=1e-6)
    assert torch.equal(wide_states[:, src.size(1) :], torch.zeros_like(wide_states[:, src.size(1) :]))
    assert torch.allclose(narrow_final, wide_final, atol=1e-6)


@pytest.mark.parametrize("options", OPTIONS)
def test_attention_on_pads_is_exactly_zero(options):
    model = model_for(5, options)
    b = collate(random_examples(8, 5))
    with torch.no_grad():
        enc = model.encode(b.src, b.src_lengths)
        _, _, weights = model.decoder(b.tgt_in, enc, enc.hidden, loop=bahdanau_steps if options.get("bahdanau_loop") == "fast" else None)  # (B, T, S)
    pad_mask = torch.arange(b.src.size(1))[None, :] >= b.src_lengths[:, None]  # (B, S)
    assert pad_mask.any()
    assert torch.equal(weights.masked_select(pad_mask[:, None, :].expand_as(weights)), torch.zeros(int(pad_mask.sum()) * weights.size(1)))
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:2]), atol=1e-5)


@pytest.mark.parametrize("ensemble", ENSEMBLE)
@pytest.mark.parametrize("options", OPTIONS)
def test_greedy_translation_same_alone_and_in_batch(options, ensemble):
    models = [model_for(6, options)] + ([model_for(16, options)] if ensemble else [])
    sources = [s for s, _ in random_examples(9, 6)]
    src, lengths = pad(sources)
    batch = greedy_search(models, src, lengths, DecodeConfig(max_len_a=1.0, max_len_b=5))
    for s, hyp in zip(sources, batch):
        alone = greedy_search(models, torch.tensor([s]), torch.tensor([len(s)]), DecodeConfig(max_len_a=1.0, max_len_b=5))[0]
        assert hyp.ids == alone.ids
        assert abs(hyp.score - alone.score) < 1e-4


@pytest.mark.parametrize("ensemble", ENSEMBLE)
@pytest.mark.parametrize("options", OPTIONS)
def test_beam_translation_same_alone_and_in_batch(options, ensemble):
    models = [model_for(7, options)] + ([model_for(17, options)] if ensemble else [])
    sources = [s for s, _ in random_examples(6, 7)]
    beam = DecodeConfig(beam_size=3, length_penalty=1.0, max_len_a=1.0, max_len_b=4, min_len=0)
    batch = beam_search(models, *pad(sources), beam, nbest=3)
    for s, nbest in zip(sources, batch):
        alone = beam_search(models, torch.tensor([s]), torch.tensor([len(s)]), beam, nbest=3)[0]
        assert [h.ids for h in alone] == [h.ids for h in nbest]
        assert [h.score for h in alone] == pytest.approx([h.score for h in nbest], abs=1e-4)


@pytest.mark.parametrize("beam", [1, 3])
def test_words_left_to_the_model_beside_known_words_decode_as_alone(tiny_run, tmp_path, beam):
    """With a lexicon, a batch holds known words (answered from it) and others of every length: each of the others
    gets the n-best, scores included, that it gets alone without the lexicon."""
    plain = Translator.load(tiny_run / "runs" / "tiny")
    texts = sorted({s for s, _ in toy_pairs("val", 40)}, key=len)
    known, unknown = texts[::3], [t for i, t in enumerate(texts) if i % 3]
    answer = toy_pairs("val", 1)[0][1]  # a target the model can write
    (tmp_path / "known.tsv").write_text("".join(f"{t}\t{answer}\n" for t in known), encoding="utf-8")
    lexicon = plain.with_lexicon(tmp_path / "known.tsv")
    n = 1 if beam == 1 else 2
    batch = lexicon.nbest(lexicon.sources(texts), n, beam_size=beam, batch_size=len(texts))
    assert [b for t, b in zip(texts, batch) if t in known] == [[(0.0, answer)]] * len(known)
    for text, got in zip(texts, batch):
        if text in unknown:
            alone = plain.nbest(plain.sources([text]), n, beam_size=beam, batch_size=1)[0]
            assert [h for _, h in got] == [h for _, h in alone]
            assert [s for s, _ in got] == pytest.approx([s for s, _ in alone], abs=1e-4)
