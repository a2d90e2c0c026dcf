"""The scores of a corpus's outputs against its references, from text alone (no model, no torch): sacreBLEU BLEU /
chrF / TER on detokenized output, and exact match, character and word (token) error rates for tasks where BLEU is the
wrong measure. `eval` (decode/evaluate) and `score` (tools/score: any system's output file) both score with these.

Per item, one reference or several (data/references: TSV lines that share a source are one item)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import sacrebleu
from rapidfuzz.distance import Levenshtein

from seq2seq.data.tokenizer import normalize_whitespace

# Per item, one reference (a string) or several (a sequence of strings): what the scoring functions take.
References = Sequence[Union[str, Sequence[str]]]


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
