"""`seq2seq score`: any system's output file scored as `eval` scores a model's, as sacreBLEU's command line scores any
BLEU: the same evaluation items (data/references), the same metrics (decode/metrics: BLEU, chrF, TER, exact match,
CER, WER), several references per item. No model and no torch: a Phonetisaurus output, a baseline's, or
`eval --output`'s own file scores to eval's numbers exactly.

The output file holds one line per evaluation item, in the items' order: for a TSV file the distinct sources in the
order of their first line (lines that share a source are one item), for parallel files one line per source line
(lines with an empty source or no reference dropped, as `eval` drops them). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from seq2seq.config import DataConfig
from seq2seq.data.corpus import read_lines
from seq2seq.data.references import EvalSet, read_references, read_tsv_references
from seq2seq.decode.metrics import bleu_chrf_ter, error_rates
from seq2seq.errors import ConfigError, DataError
from seq2seq.metric import rate_lines, word_error


@dataclass(frozen=True)
class OutputScores:
    """An output file's scores: the keys and meanings of `eval --json`'s, less what needs a model (loss, decoding)."""

    bleu: float
    chrf: float
    ter: float
    exact_match: float  # % of outputs equal to one of their references (whitespace normalized)
    cer: float  # % edits per reference character, the closest reference per item
    wer: float  # % edits per reference token: the phoneme error rate of G2P
    n_sentences: int  # items scored, each once
    references: int  # the most references of one item
    signatures: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "bleu": self.bleu, "chrf": self.chrf, "ter": self.ter, "exact_match": self.exact_match,
            "word_error": word_error(self.exact_match), "cer": self.cer, "wer": self.wer, "n_sentences": self.n_sentences,
            "references": self.references, "signatures": self.signatures,
        }


def load_references(data: Path | None, src: Path | None, refs: Sequence[Path] | None) -> EvalSet:
    """The evaluation items: of the TSV file `data`, or of the source file `src` with its reference files `refs`
    (one or more, line by line), read by the rules `eval --data` and `eval --src/--ref` read them by."""
    refs = list(refs or [])
    if (src is None) != (not refs):
        raise ConfigError("--src and --ref go together: give both to score against parallel files, or --data FILE.tsv")
    if data is not None and src is not None:
        raise ConfigError("--data scores against a TSV file and --src/--ref against parallel files: give one of them")
    if data is not None:
        return read_tsv_references(data, DataConfig())  # the default languages: for the parallel-files hint only
    if src is None:
        raise ConfigError("nothing to score against: give --data FILE.tsv or --src FILE --ref FILE")
    return read_references(src, refs)


def read_hypotheses(path: Path, n_items: int, against: str) -> list[str]:
    """The lines of the output file `path` (strict UTF-8; CRLF read as LF), which must be one per evaluation item:
    another count is an error naming both counts and both files (`against`: the references, as the user named them)."""
    lines = read_lines(path)
    if len(lines) != n_items:
        raise DataError(
            f"{path} has {len(lines)} line{'' if len(lines) == 1 else 's'} but {against} has {n_items} evaluation items: give one output line per "
            f"item, in the items' order (a TSV file's distinct sources in the order of their first line)"
        )
    return lines


def score_outputs(hypotheses: Sequence[str], eval_set: EvalSet) -> OutputScores:
    """Score `hypotheses` (one per item of `eval_set`, in order) with eval's metrics against each item's references."""
    if len(hypotheses) != len(eval_set.items):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(eval_set.items)} items")
    references = [item.refs for item in eval_set.items]
    bleu, chrf, ter, signatures = bleu_chrf_ter(hypotheses, references)
    rates = error_rates(hypotheses, references)
    return OutputScores(
        bleu, chrf, ter, rates.exact_match, rates.cer, rates.wer, len(eval_set.items), eval_set.max_references, signatures
    )


def score_file(hyp: Path, data: Path | None, src: Path | None, refs: Sequence[Path] | None) -> OutputScores:
    """`seq2seq score`: the output file `hyp` against the items of `data` (TSV) or of `src` with `refs`."""
    eval_set = load_references(data, src, refs)
    against = str(data) if data is not None else " + ".join(map(str, [src, *(refs or [])]))
    return score_outputs(read_hypotheses(hyp, len(eval_set.items), against), eval_set)


def score_lines(scores: OutputScores) -> list[str]:
    """The text report: eval's lines for the same metrics (the rates named by seq2seq/metric, as eval names them)."""
    return [
        f"sentences    {scores.n_sentences}",
        f"references   {scores.references} at most per sentence",
        f"BLEU         {scores.bleu:.2f}   {scores.signatures['bleu']}",
        f"chrF         {scores.chrf:.2f}   {scores.signatures['chrf']}",
        f"TER          {scores.ter:.2f}   {scores.signatures['ter']}",
        *rate_lines(scores.exact_match, scores.cer, scores.wer),
    ]
