"""Scores on a corpus: sacreBLEU BLEU / chrF / TER on detokenized output, and loss / perplexity per real token."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import sacrebleu
import torch

from seq2seq.data import Encoder, Example, Pair, collate, encode_pairs
from seq2seq.device import autocast
from seq2seq.loss import masked_nll
from seq2seq.model import Seq2Seq
from seq2seq.search import decode_corpus


@dataclass
class Scores:
    bleu: float
    chrf: float
    ter: float
    loss: float
    ppl: float
    n_sentences: int
    n_tokens: int
    signatures: dict[str, str] = field(default_factory=dict)
    hypotheses: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "bleu": self.bleu, "chrf": self.chrf, "ter": self.ter, "loss": self.loss, "ppl": self.ppl,
            "n_sentences": self.n_sentences, "n_tokens": self.n_tokens, "signatures": self.signatures,
        }


@torch.inference_mode()
def corpus_loss(
    model: Seq2Seq, examples: Sequence[Example], device: torch.device, precision: str, batch_size: int
) -> tuple[float, int]:
    """Teacher-forced summed NLL over real target tokens and their count (no label smoothing)."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][1]))
    total, n_tokens = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = collate([examples[i] for i in order[start : start + batch_size]]).to(device)
        with autocast(device, precision):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss_sum, n = masked_nll(logits, batch.tgt_out)
        total += float(loss_sum)
        n_tokens += n
    model.train(was_training)
    return total, n_tokens


def bleu_chrf_ter(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, float, float, dict[str, str]]:
    bleu, chrf, ter = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF(), sacrebleu.metrics.TER()
    refs = [list(references)]
    scores = (bleu.corpus_score(hypotheses, refs).score, chrf.corpus_score(hypotheses, refs).score, ter.corpus_score(hypotheses, refs).score)
    signatures = {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature()), "ter": str(ter.get_signature())}
    return (*scores, signatures)


def evaluate(
    model: Seq2Seq,
    pairs: Sequence[Pair],
    src: Encoder,
    tgt: Encoder,
    device: torch.device,
    precision: str,
    batch_size: int,
    max_len_a: float,
    max_len_b: int,
    progress: bool = False,
) -> Scores:
    """Decode the sources greedily, score against the raw references, and compute the teacher-forced loss.

    `progress`: show a progress bar on stderr while decoding.
    """
    was_training = model.training
    model.eval()
    examples = encode_pairs(pairs, src, tgt)
    loss_sum, n_tokens = corpus_loss(model, examples, device, precision, batch_size)
    with autocast(device, precision):
        hyps = decode_corpus(model, [s for s, _ in examples], device, batch_size, max_len_a, max_len_b, progress=progress)
    model.train(was_training)
    outputs = [tgt.tokenizer.detokenize(tgt.vocab.decode(h.ids)) for h in hyps]
    bleu, chrf, ter, signatures = bleu_chrf_ter(outputs, [t for _, t in pairs])
    loss = loss_sum / max(n_tokens, 1)
    return Scores(bleu, chrf, ter, loss, math.exp(min(loss, 100.0)), len(pairs), n_tokens, signatures, outputs)
