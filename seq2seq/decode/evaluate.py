"""Scores on a corpus: sacreBLEU BLEU / chrF / TER on detokenized output; exact match, character and word (token)
error rates for tasks where BLEU is the wrong measure; and loss / perplexity per real token.

An output is scored once per item against all of its references (data/references: TSV lines that share a source
are one item), while the loss is over every (source, reference) pair."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import sacrebleu
import torch
from rapidfuzz.distance import Levenshtein

from seq2seq.config import DataConfig, DecodeConfig
from seq2seq.data.batch import collate
from seq2seq.data.encoding import Encoder, Example, encode_pairs
from seq2seq.data.corpus import Pair
from seq2seq.data.references import EvalSet, load_eval_corpus, one_reference_each, read_references, read_tsv_references
from seq2seq.data.tokenizer import normalize_whitespace
from seq2seq.device import autocast
from seq2seq.errors import ConfigError, DataError
from seq2seq.model.loss import masked_nll
from seq2seq.model.network import Seq2Seq
from seq2seq.model.quantize import quantization_of
from seq2seq.decode.search import decode

SPLITS = ("val", "test")  # the corpora of a config that `eval --split` scores: data.valid, data.test

# Per item, one reference (a string) or several (a sequence of strings): what the scoring functions take.
References = Sequence[Union[str, Sequence[str]]]


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
    exact_match: float  # % of outputs equal to one of their references (whitespace normalized)
    cer: float  # character error rate, %: edit distance / reference characters, over the corpus (the closest reference)
    wer: float  # word (whitespace token) error rate, %: the phoneme error rate of G2P, the WER of ASR-style text
    loss: float  # of the model that decoded: the int8 one when quantized
    ppl: float
    n_sentences: int  # items: sources scored, each once
    n_tokens: int  # real target tokens of every (source, reference) pair: what the loss is over
    setup: DecodingSetup
    signatures: dict[str, str] = field(default_factory=dict)
    hypotheses: list[str] = field(default_factory=list, repr=False)
    references: int = 1  # the most references of one item

    def as_dict(self) -> dict[str, object]:
        return {
            "bleu": self.bleu, "chrf": self.chrf, "ter": self.ter,
            "exact_match": self.exact_match, "cer": self.cer, "wer": self.wer, "loss": self.loss, "ppl": self.ppl,
            "n_sentences": self.n_sentences, "n_tokens": self.n_tokens, "references": self.references,
            **dataclasses.asdict(self.setup),
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


def reference_lists(references: References) -> list[tuple[str, ...]]:
    """Per item, its references as a tuple: a string is one reference, a sequence of strings several."""
    return [(refs,) if isinstance(refs, str) else tuple(refs) for refs in references]


def reference_streams(references: References) -> list[list[str | None]]:
    """sacreBLEU's multi-reference input: k streams, one per reference slot, each as long as the corpus; an item
    with fewer than k references has None in the streams it lacks.

    sacreBLEU drops a None reference of a segment before scoring it (`Metric._cache_references`), so each item is
    scored against exactly its own references. Padding by repeating a reference would be wrong: BLEU and chrF take
    the best match over an item's references and would not move, but TER divides the fewest edits by the *mean*
    length of the item's references, which a repeated one would weigh twice. An empty string is no padding either:
    sacreBLEU keeps it as a reference. With one reference per item this is `[references]`, the single stream.
    """
    lists = reference_lists(references)
    k = max((len(refs) for refs in lists), default=1)
    return [[refs[j] if j < len(refs) else None for refs in lists] for j in range(k)]


def bleu_chrf_ter(hypotheses: Sequence[str], references: References) -> tuple[float, float, float, dict[str, str]]:
    """sacreBLEU's corpus BLEU, chrF and TER and their signatures; `references`: per item one string or several
    (`reference_streams`: several references are scored as sacreBLEU scores them, `nrefs:var` in the signature when
    their number varies)."""
    bleu, chrf, ter = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF(), sacrebleu.metrics.TER()
    refs = reference_streams(references)
    scores = (bleu.corpus_score(hypotheses, refs).score, chrf.corpus_score(hypotheses, refs).score, ter.corpus_score(hypotheses, refs).score)
    signatures = {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature()), "ter": str(ter.get_signature())}
    return (*scores, signatures)


@dataclass(frozen=True)
class ErrorRates:
    """Exact match and edit-distance error rates of a corpus, in %."""

    exact_match: float
    cer: float
    wer: float


def error_rates(hypotheses: Sequence[str], references: References) -> ErrorRates:
    """Exact match, CER and WER of `hypotheses` against `references` (per item one string or several), all
    whitespace normalized.

    Corpus-level, as ASR scoring does: the summed edit distances over the summed reference lengths (characters for
    CER, whitespace-separated tokens for WER), so long references weigh more than short ones. Rates may pass 100
    (an output longer than its reference). Empty references: 0 when the outputs are empty too, else 100.
    The edit distances are rapidfuzz's (C++ Levenshtein on strings and on token lists).

    Several references, as G2P papers score several pronunciations: an output matches exactly when it equals any of
    them; CER and WER each take, per item, the reference with the fewest edits per reference length (the first on a
    tie), and add up that reference's edits and length (`_closest`).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    hyps = [normalize_whitespace(h) for h in hypotheses]
    refs = [tuple(normalize_whitespace(r) for r in item) for item in reference_lists(references)]
    exact = sum(h in item for h, item in zip(hyps, refs))
    chars = [_closest(h, item) for h, item in zip(hyps, refs)]
    words = [_closest(h.split(), [r.split() for r in item]) for h, item in zip(hyps, refs)]
    return ErrorRates(
        exact_match=100.0 * exact / max(len(refs), 1),
        cer=_rate(sum(e for e, _ in chars), sum(n for _, n in chars)),
        wer=_rate(sum(e for e, _ in words), sum(n for _, n in words)),
    )


def _closest(hyp: Sequence[str], refs: Sequence[Sequence[str]]) -> tuple[int, int]:
    """(edits, length) of the reference closest to `hyp` by edits per reference length; the first on a tie."""
    scored = [(Levenshtein.distance(hyp, ref), len(ref)) for ref in refs]
    return min(scored, key=lambda s: s[0] / s[1] if s[1] else (0.0 if s[0] == 0 else math.inf))


def _rate(edits: int, n: int) -> float:
    if n == 0:
        return 0.0 if edits == 0 else 100.0
    return 100.0 * edits / n


def load_split(
    data_cfg: DataConfig, split: str, src: Path | None, refs: Sequence[Path] | None, data: Path | None = None
) -> EvalSet:
    """What to score (data/references: its items and pairs): the TSV file `data` (`eval --data`), or the file `src`
    with the reference files `refs` (one or more), or else the config's `split` corpus. Empty lines are dropped."""
    refs = list(refs or [])
    if (src is None) != (not refs):
        raise ConfigError("--src and --ref go together")
    if data is not None:
        if src is not None:
            raise ConfigError("--data scores a TSV file, --src/--ref parallel files: give one of them")
        return read_tsv_references(data, data_cfg)
    if src is not None:
        return read_references(src, refs)
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    key = "valid" if split == "val" else "test"
    spec = data_cfg.valid if split == "val" else data_cfg.test
    if not spec:
        raise DataError(f"data.{key}: the model's config names no {split} corpus (use --src/--ref)")
    return load_eval_corpus(data_cfg, key)


def evaluate(
    model: Seq2Seq,
    data: EvalSet | Sequence[Pair],
    src: Encoder,
    tgt: Encoder,
    device: torch.device,
    precision: str,
    decode_cfg: DecodeConfig,
    *,
    progress: bool = False,
) -> Scores:
    """Decode each item's source as `decode_cfg` says, score against its raw references, and compute the
    teacher-forced loss over every (source, reference) pair.

    `data`: an EvalSet (data/references), or pairs, each its own item with one reference. One `model` does both,
    so that loss and BLEU describe the same weights (a quantized model: its int8 ones); the Scores record how
    (`DecodingSetup`). The loss batches by decode_cfg.batch_size too. `progress`: show a progress bar on stderr
    while decoding.
    """
    data = data if isinstance(data, EvalSet) else one_reference_each(data)
    was_training = model.training
    model.eval()
    loss_sum, n_tokens = corpus_loss(model, encode_pairs(data.pairs, src, tgt), device, precision, decode_cfg.batch_size)
    with autocast(device, precision):
        nbests = decode(model, [src.source_ids(item.src) for item in data.items], decode_cfg, device, progress=progress)
    model.train(was_training)
    outputs = [tgt.text(hyps[0].ids) for hyps in nbests]  # the lines translate prints and `eval --output` writes
    references = [item.refs for item in data.items]
    bleu, chrf, ter, signatures = bleu_chrf_ter(outputs, references)
    rates = error_rates(outputs, references)
    loss = loss_sum / max(n_tokens, 1)
    ppl = math.exp(min(loss, 100.0)) if math.isfinite(loss) else loss  # exp overflows past ~709; inf stays inf, NaN NaN
    setup = DecodingSetup(decode_cfg.beam_size, decode_cfg.batch_size, quantization_of(model), precision, device.type)
    return Scores(
        bleu, chrf, ter, rates.exact_match, rates.cer, rates.wer, loss, ppl, len(data.items), n_tokens, setup, signatures,
        outputs, data.max_references,
    )

