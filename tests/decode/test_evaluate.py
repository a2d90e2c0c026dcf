"""Scores: sacreBLEU's BLEU, chrF and TER, exact match, CER and WER on pairs worked by hand, and the loss that no
search changes."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from seq2seq.config import Config, ModelConfig
from seq2seq.data.encoding import encode_pairs
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import Vocab
from seq2seq.decode.evaluate import DecodingSetup, Scores, bleu_chrf_ter, corpus_loss, error_rates, evaluate
from seq2seq.decode.translator import Translator
from seq2seq.files import dump_json
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.model.network import Seq2Seq
from tests.conftest import invoke, strict_json, toy_pairs, write_corpus


def test_bleu_chrf_and_ter_of_pairs_worked_by_hand() -> None:
    bleu, chrf, ter, signatures = bleu_chrf_ter(["a b c d e"], ["a b c d f"])
    # BLEU: n-gram precisions 4/5, 3/4, 2/3, 1/2 and equal lengths (no brevity penalty): their geometric mean
    assert bleu == pytest.approx(100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** (1 / 4))
    # chrF: the characters without spaces, abcde / abcdf: precision = recall = 4/5, 3/4, 2/3, 1/2, 0 for
    # n = 1 .. 5 (no 6-grams in five characters), so F = their mean
    assert chrf == pytest.approx(100 * (4 / 5 + 3 / 4 + 2 / 3 + 1 / 2 + 0) / 5)
    assert ter == pytest.approx(100 * 1 / 5)  # one substitution in five reference words
    assert bleu_chrf_ter(["a b c d e"], ["a b c d e"])[:3] == pytest.approx((100.0, 100.0, 0.0))
    assert bleu_chrf_ter(["v w x y z"], ["a b c d e"])[:3] == pytest.approx((0.0, 0.0, 100.0))
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in signatures["bleu"]


def test_exact_match_cer_and_wer_of_pairs_worked_by_hand() -> None:
    hyps = ["B R AW1 N", "K AE1 T", "D AO1 G"]
    refs = ["B R AW1 N", "K AE1 T S", "D  AA1 G "]  # the reference's extra spaces are not errors
    rates = error_rates(hyps, refs)
    assert rates.exact_match == pytest.approx(100 / 3)  # the first only
    # words: 0 + 1 (deleted S) + 1 (AO1 for AA1) edits over 4 + 4 + 3 reference tokens
    assert rates.wer == pytest.approx(100 * 2 / 11)
    # characters: 0 + 2 (" S") + 1 (O for A) edits over 9 + 9 + 7 reference characters (normalized)
    assert rates.cer == pytest.approx(100 * 3 / 25)
    # corpus-level, not a mean of sentence rates: one long right reference outweighs a short wrong one
    long_right = error_rates(["a b c d e f g h i j", "x"], ["a b c d e f g h i j", "y"])
    assert long_right.wer == pytest.approx(100 * 1 / 11) and long_right.cer == pytest.approx(100 * 1 / 20)
    assert error_rates(["a b"], ["a b"]) == error_rates([" a  b"], ["a b "])
    assert (error_rates(["a b"], ["a b"]).cer, error_rates(["a b"], ["a b"]).wer) == (0.0, 0.0)
    assert error_rates(["x y z"], ["a"]).wer == pytest.approx(300.0)  # insertions: a rate may pass 100
    assert error_rates([""], [""]) == error_rates(["a"], ["a"])  # empty references: no error without output ...
    assert error_rates(["a"], [""]).cer == 100.0  # ... and 100 with one
    with pytest.raises(ValueError):
        error_rates(["a"], [])


def test_the_loss_ignores_the_search_and_beam_hypotheses_are_each_sentence_alone(bpe_run: Path) -> None:
    # fp32: under bf16 autocast, kernels chosen for another batch shape round differently, and a near-tie of
    # a barely trained model can then flip (auto picks bf16 on a CPU with native bf16)
    t = Translator.load(bpe_run, precision="fp32")
    pairs = toy_pairs("val", 30)
    greedy = evaluate(t.model, pairs, t.src, t.tgt, t.device, "fp32", replace(t.cfg.decode, beam_size=1))
    beam = evaluate(t.model, pairs, t.src, t.tgt, t.device, "fp32", replace(t.cfg.decode, beam_size=3, length_penalty=1.0))
    assert greedy.loss == beam.loss and greedy.n_tokens == beam.n_tokens
    assert greedy.ppl == pytest.approx(2.718281828459045 ** greedy.loss)
    assert beam.hypotheses == [t.translate([s], beam_size=3)[0] for s, _ in pairs]


# ---- `eval` reports the model that decoded: with --quantize int8 the loss is the int8 model's, and the report

PAIRS = toy_pairs("val", 24)


def toy_checkpoint(seed: int = 0) -> Checkpoint:
    """A checkpoint of a small random model whose word vocabularies cover PAIRS."""
    tokenizer = Tokenizer()
    src = Vocab.build(Counter(t for s, _ in PAIRS for t in tokenizer.tokenize(s)))
    tgt = Vocab.build(Counter(t for _, s in PAIRS for t in tokenizer.tokenize(s)))
    cfg = Config(model=ModelConfig(emb_size=16, hidden_size=24, dropout=0.0))
    torch.manual_seed(seed)
    model = Seq2Seq(cfg.model, len(src), len(tgt))
    return Checkpoint(cfg, src, tgt, tokenizer, tokenizer, model.state_dict(), 5)


@pytest.fixture(scope="module")
def ckpt() -> Checkpoint:
    return toy_checkpoint()


def loss_of(t: Translator, precision: str, batch_size: int) -> float:
    """Teacher-forced loss per token of `t.model` on PAIRS, outside `evaluate`.

    The batch size matters with int8: dynamic quantization scales the activations per batch.
    """
    total, n = corpus_loss(t.model, encode_pairs(PAIRS, t.src, t.tgt), t.device, precision, batch_size)
    return total / n






def test_the_int8_loss_is_the_int8_models_and_the_scores_say_so(ckpt: Checkpoint) -> None:
    fp32 = Translator.from_checkpoint(ckpt, "cpu", "fp32", "none")
    int8 = Translator.from_checkpoint(ckpt, "cpu", None, "int8")
    assert loss_of(int8, "fp32", 5) != loss_of(fp32, "fp32", 5)  # int8 rounding moves the loss: the check below means something
    decode_cfg = int8.decode_config(beam_size=2, batch_size=5)
    scores = evaluate(int8.model, PAIRS, int8.src, int8.tgt, int8.device, int8.precision, decode_cfg)
    assert scores.loss == pytest.approx(loss_of(int8, "fp32", 5), rel=1e-9)
    assert scores.ppl == pytest.approx(math.exp(scores.loss))
    assert scores.setup == DecodingSetup(beam_size=2, batch_size=5, quantize="int8", precision="fp32", device="cpu")
    plain = evaluate(fp32.model, PAIRS, fp32.src, fp32.tgt, fp32.device, "fp32", fp32.decode_config())
    assert plain.setup == DecodingSetup(beam_size=1, batch_size=128, quantize="none", precision="fp32", device="cpu")
    assert plain.loss == pytest.approx(loss_of(fp32, "fp32", 128), rel=1e-9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="eval decodes on CUDA when present, and int8 runs on the CPU only")
def test_eval_json_and_table_report_the_quantized_models_loss_and_the_setup(tmp_path, monkeypatch, capsys, ckpt) -> None:
    path = tmp_path / "model.pt"
    ckpt.write(path)
    prefix = write_corpus(tmp_path, "dev", PAIRS)
    files = ["--src", f"{prefix}.en", "--ref", f"{prefix}.de"]
    int8_loss = loss_of(Translator.from_checkpoint(ckpt, "cpu", None, "int8"), "fp32", 7)
    fp32_loss = loss_of(Translator.from_checkpoint(ckpt, "cpu", "fp32", "none"), "fp32", 7)
    assert abs(int8_loss - fp32_loss) > 1e-6

    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", str(path), *files, "--quantize", "int8", "--beam", "2", "--batch-size", "7", "--json", "-q")
    assert code == 0, err
    report = strict_json(out)
    assert {k: report[k] for k in ("beam_size", "batch_size", "quantize", "precision", "device")} == {
        "beam_size": 2, "batch_size": 7, "quantize": "int8", "precision": "fp32", "device": "cpu",
    }
    assert report["loss"] == pytest.approx(int8_loss, rel=1e-9) and report["n_sentences"] == len(PAIRS)

    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", str(path), *files, "--quantize", "int8", "--beam", "2", "--batch-size", "7", "-q")
    assert code == 0, err
    assert "decoding     beam 2, batch 7, quantize int8, precision fp32, cpu\n" in out
    assert f"loss / ppl   {int8_loss:.4f} / " in out

    code, out, err = invoke(capsys, monkeypatch, "eval", "--model", str(path), *files, "--json", "-q")
    assert code == 0, err
    plain = strict_json(out)
    assert plain["quantize"] == "none" and plain["beam_size"] == 1 and plain["batch_size"] == 128
    assert plain["precision"] in ("fp32", "bf16") and plain["loss"] != report["loss"]


def test_a_non_finite_loss_is_null_in_the_json_report() -> None:
    setup = DecodingSetup(beam_size=1, batch_size=8, quantize="none", precision="fp32", device="cpu")
    scores = Scores(10.0, 20.0, 30.0, 50.0, 5.0, 10.0, math.inf, math.inf, 3, 9, setup, {"bleu": "sig"})
    report = strict_json(dump_json({**scores.as_dict(), "model": "m.pt"}))
    assert report["loss"] is None and report["ppl"] is None and report["bleu"] == 10.0 and report["quantize"] == "none"
