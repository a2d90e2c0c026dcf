"""Scores: sacreBLEU's BLEU, chrF and TER on pairs worked by hand, and the loss that no search changes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from seq2seq.decode.evaluate import bleu_chrf_ter, evaluate
from seq2seq.decode.translator import Translator
from tests.conftest import toy_pairs


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
