"""Scores on a corpus: sacreBLEU BLEU / chrF / TER on detokenized output; exact match, character and word (token)
error rates for tasks where BLEU is the wrong measure; and loss / perplexity per real token."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import sacrebleu
import torch
from rapidfuzz.distance import Levenshtein

from seq2seq.config import DataConfig, DecodeConfig
from seq2seq.data.batch import collate
from seq2seq.data.encoding import Encoder, Example, encode_pairs
from seq2seq.data.corpus import Pair, drop_empty, load_corpus, read_parallel_files
from seq2seq.data.tokenizer import normalize_whitespace
from seq2seq.device import autocast
from seq2seq.errors import ConfigError, DataError
from seq2seq.model.loss import masked_nll
from seq2seq.model.network import Seq2Seq
from seq2seq.model.quantize import quantization_of
from seq2seq.decode.search import decode

SPLITS = ("val", "test")  # the corpora of a config that `eval --split` scores: data.valid, data.test


@dataclass(frozen=True)
class DecodingSetup:
    """How the scored outputs and the loss were computed: two runs compare only when these agree."""

    beam_size: int  # 1: greedy
    batch_size: int  # sentences per batch (decoding and loss)
    quantize: str  # none | int8: read from the model's modules (`quantization_of`), not from a config
    precision: str  # fp32 | bf16: the autocast both ran under (int8 runs fp32 activations)
    device: str  # cpu, cuda, ...

    def describe(self) -> str:
        """One line for the text report, in the options' words: `beam 5, batch 64, quantize int8, precision fp32, cpu`."""
        search = "greedy (beam 1)" if self.beam_size == 1 else f"beam {self.beam_size}"
        return f"{search}, batch {self.batch_size}, quantize {self.quantize}, precision {self.precision}, {self.device}"


@dataclass
class Scores:
    bleu: float
    chrf: float
    ter: float
    exact_match: float  # % of outputs equal to their reference (whitespace normalized)
    cer: float  # character error rate, %: edit distance / reference characters, over the corpus
    wer: float  # word (whitespace token) error rate, %: the phoneme error rate of G2P, the WER of ASR-style text
    loss: float  # of the model that decoded: the int8 one when quantized
    ppl: float
    n_sentences: int
    n_tokens: int
    setup: DecodingSetup
    signatures: dict[str, str] = field(default_factory=dict)
    hypotheses: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "bleu": self.bleu, "chrf": self.chrf, "ter": self.ter,
            "exact_match": self.exact_match, "cer": self.cer, "wer": self.wer, "loss": self.loss, "ppl": self.ppl,
            "n_sentences": self.n_sentences, "n_tokens": self.n_tokens, **dataclasses.asdict(self.setup),
            "signatures": self.signatures,
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


@dataclass(frozen=True)
class ErrorRates:
    """Exact match and edit-distance error rates of a corpus, in %."""

    exact_match: float
    cer: float
    wer: float


def error_rates(hypotheses: Sequence[str], references: Sequence[str]) -> ErrorRates:
    """Exact match, CER and WER of `hypotheses` against `references`, both whitespace normalized.

    Corpus-level, as ASR scoring does: the summed edit distances over the summed reference lengths (characters for
    CER, whitespace-separated tokens for WER), so long references weigh more than short ones. Rates may pass 100
    (an output longer than its reference). Empty references: 0 when the outputs are empty too, else 100.
    The edit distances are rapidfuzz's (C++ Levenshtein on strings and on token lists).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    hyps = [normalize_whitespace(h) for h in hypotheses]
    refs = [normalize_whitespace(r) for r in references]
    exact = sum(h == r for h, r in zip(hyps, refs))
    char_edits = sum(Levenshtein.distance(h, r) for h, r in zip(hyps, refs))
    word_edits = sum(Levenshtein.distance(h.split(), r.split()) for h, r in zip(hyps, refs))
    n_chars = sum(len(r) for r in refs)
    n_words = sum(len(r.split()) for r in refs)
    return ErrorRates(
        exact_match=100.0 * exact / max(len(refs), 1), cer=_rate(char_edits, n_chars), wer=_rate(word_edits, n_words)
    )


def _rate(edits: int, n: int) -> float:
    if n == 0:
        return 0.0 if edits == 0 else 100.0
    return 100.0 * edits / n


def load_split(data_cfg: DataConfig, split: str, src: Path | None, ref: Path | None) -> list[Pair]:
    """The pairs to score: the files `src` + `ref` when given (empty lines dropped), else the config's `split` corpus."""
    if (src is None) != (ref is None):
        raise ConfigError("--src and --ref go together")
    if src is not None and ref is not None:
        return drop_empty(read_parallel_files(src, ref), "eval", f"{src} + {ref}")
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    key = "valid" if split == "val" else "test"
    spec = data_cfg.valid if split == "val" else data_cfg.test
    if not spec:
        raise DataError(f"data.{key}: the model's config names no {split} corpus (use --src/--ref)")
    return load_corpus(data_cfg, key)


def evaluate(
    model: Seq2Seq,
    pairs: Sequence[Pair],
    src: Encoder,
    tgt: Encoder,
    device: torch.device,
    precision: str,
    decode_cfg: DecodeConfig,
    *,
    progress: bool = False,
) -> Scores:
    """Decode the sources as `decode_cfg` says, score against the raw references, and compute the teacher-forced loss.

    One `model` does both, so that loss and BLEU describe the same weights (a quantized model: its int8
    ones); the Scores record how (`DecodingSetup`). The loss batches by decode_cfg.batch_size too.
    `progress`: show a progress bar on stderr while decoding.
    """
    was_training = model.training
    model.eval()
    examples = encode_pairs(pairs, src, tgt)
    loss_sum, n_tokens = corpus_loss(model, examples, device, precision, decode_cfg.batch_size)
    with autocast(device, precision):
        nbests = decode(model, [s for s, _ in examples], decode_cfg, device, progress=progress)
    model.train(was_training)
    outputs = [tgt.tokenizer.detokenize(tgt.vocab.decode(hyps[0].ids)) for hyps in nbests]
    references = [t for _, t in pairs]
    bleu, chrf, ter, signatures = bleu_chrf_ter(outputs, references)
    rates = error_rates(outputs, references)
    loss = loss_sum / max(n_tokens, 1)
    ppl = math.exp(min(loss, 100.0)) if math.isfinite(loss) else loss  # exp overflows past ~709; inf stays inf, NaN NaN
    setup = DecodingSetup(decode_cfg.beam_size, decode_cfg.batch_size, quantization_of(model), precision, device.type)
    return Scores(
        bleu, chrf, ter, rates.exact_match, rates.cer, rates.wer, loss, ppl, len(pairs), n_tokens, setup, signatures, outputs
    )

