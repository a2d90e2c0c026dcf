"""Scores on a corpus: sacreBLEU BLEU / chrF / TER on detokenized output; exact match, character and word (token)
error rates for tasks where BLEU is the wrong measure; and loss / perplexity per real token.

Any model decodes through its Translator (decode/translator: a checkpoint, an export or an ensemble), its sources
encoded and truncated exactly as `translate` encodes them. An output is scored once per item against all of its
references (data/references: TSV lines that share a source are one item), while the loss is over every (source,
reference) pair, where the model has a teacher-forced pass (a checkpoint; not an export or an ensemble). No torch."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from seq2seq.config import DataConfig
from seq2seq.data.encoding import encode_pairs
from seq2seq.data.corpus import Pair
from seq2seq.data.references import EvalSet, load_eval_corpus, one_reference_each, read_references, read_tsv_references
from seq2seq.errors import ConfigError, DataError
# The text metrics live torch-free in decode/metrics (`seq2seq score` needs no torch); imported here by their old callers too.
from seq2seq.decode.metrics import ErrorRates, References, bleu_chrf_ter, error_rates, reference_lists, reference_streams  # noqa: F401
from seq2seq.metric import word_error

if TYPE_CHECKING:
    from seq2seq.decode.translator import Translator

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
    exact_match: float  # % of outputs equal to one of their references (whitespace normalized)
    cer: float  # character error rate, %: edit distance / reference characters, over the corpus (the closest reference)
    wer: float  # word (whitespace token) error rate, %: the phoneme error rate of G2P, the WER of ASR-style text
    loss: float | None  # of the model that decoded (the int8 one when quantized); None: an export or an ensemble
    ppl: float | None
    n_sentences: int  # items: sources scored, each once
    n_tokens: int  # real target tokens of every (source, reference) pair: what the loss is over
    setup: DecodingSetup
    signatures: dict[str, str] = field(default_factory=dict)
    hypotheses: list[str] = field(default_factory=list, repr=False)
    references: int = 1  # the most references of one item
    from_lexicon: int = 0  # items answered from the translator's --lexicon, not decoded

    def as_dict(self) -> dict[str, object]:
        return {
            "bleu": self.bleu, "chrf": self.chrf, "ter": self.ter,
            "exact_match": self.exact_match, "word_error": word_error(self.exact_match), "cer": self.cer, "wer": self.wer,
            "loss": self.loss, "ppl": self.ppl,
            "n_sentences": self.n_sentences, "n_tokens": self.n_tokens, "references": self.references, "from_lexicon": self.from_lexicon,
            **dataclasses.asdict(self.setup),
            "signatures": self.signatures,
        }


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
    translator: Translator, data: EvalSet | Sequence[Pair], *, beam_size: int | None = None, batch_size: int | None = None,
    progress: bool = False,
) -> Scores:
    """Decode each item's source with `translator` (beam_size / batch_size None: its decode config's), the sources
    as `translate` reads them (truncated to decode.max_src_len); score against the raw references, and compute the
    teacher-forced loss over every (source, reference) pair where the translator has one.

    `data`: an EvalSet (data/references), or pairs, each its own item with one reference. One model does both, so
    that loss and BLEU describe the same weights (a quantized model: its int8 ones); the Scores record how
    (`DecodingSetup`). The loss batches by decode_cfg.batch_size too. `progress`: show a progress bar on stderr
    while decoding.
    """
    data = data if isinstance(data, EvalSet) else one_reference_each(data)
    decode_cfg = translator.decode_config(beam_size, batch_size)
    examples = encode_pairs(data.pairs, translator.src, translator.tgt)
    summed = translator.loss(examples, decode_cfg.batch_size)
    sources = translator.sources([item.src for item in data.items])
    hyps = translator.hypotheses(sources, decode_cfg.batch_size, progress=progress, beam_size=decode_cfg.beam_size)
    outputs = [translator.detokenize(h.ids) for h in hyps]  # the lines translate prints and `eval --output` writes
    references = [item.refs for item in data.items]
    bleu, chrf, ter, signatures = bleu_chrf_ter(outputs, references)
    rates = error_rates(outputs, references)
    if summed is None:
        loss = ppl = None
        n_tokens = sum(len(tgt) + 1 for _, tgt in examples)  # each target and its <eos>, as data/batch.decoder_steps counts
    else:
        n_tokens = summed[1]
        loss = summed[0] / max(n_tokens, 1)
        ppl = math.exp(min(loss, 100.0)) if math.isfinite(loss) else loss  # exp overflows past ~709; inf stays inf, NaN NaN
    setup = DecodingSetup(decode_cfg.beam_size, decode_cfg.batch_size, translator.quantize, translator.precision, translator.device)
    return Scores(
        bleu, chrf, ter, rates.exact_match, rates.cer, rates.wer, loss, ppl, len(data.items), n_tokens, setup, signatures,
        outputs, data.max_references, translator.answered(sources),
    )
