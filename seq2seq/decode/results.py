"""What `translate` reports for one input: the translation, its score, its tokens and, on request, the attention.

Rendered as one JSON object per line (`--json`), as `score<TAB>translation` n-best blocks, as a compact
heatmap of shaded blocks for the terminal, or drawn into image files (one per input: FILE-1.png, ...).
`files.dump_json` is how every JSON line of the CLI is written (translate, eval, info): never NaN or Infinity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

from seq2seq.decode.search import Hypothesis
from seq2seq.files import dump_json
from seq2seq.data.report import unknown_warning
from seq2seq.data.tokenizer import JOINER
from seq2seq.decode.translator import Translator
from seq2seq.data.batch import Source
from seq2seq.data.vocab import EOS_TOKEN

log = logging.getLogger("seq2seq")


class Result(NamedTuple):
    input: str
    output: str  # the detokenized translation ("" for an empty input)
    score: float  # sum of the token log-probabilities, <eos> included when produced (beam: / length penalty)
    tokens: list[str]  # target tokens, without <eos>
    src_tokens: list[str]  # source tokens as the model saw them (unknown ones as <unk>), <eos> last
    attention: list[list[float]] | None  # rows: `tokens` (+ <eos> when produced); columns: `src_tokens`
    warning: str | None = None  # most of the input's tokens are unknown to the source vocabulary (data/report.unknown_warning)

    @property
    def attention_rows(self) -> list[str]:
        """The target token of each attention row: the output tokens, then <eos> when it was produced."""
        if self.attention is None:
            return []
        return (self.tokens + [EOS_TOKEN])[: len(self.attention)]

    def to_json(self) -> str:
        """One line of JSON: input, output, score (null when not finite), tokens; with the attention, src_tokens and attention too."""
        obj: dict[str, object] = {"input": self.input, "output": self.output, "score": self.score, "tokens": self.tokens}
        if self.attention is not None:
            obj["src_tokens"] = self.src_tokens
            obj["attention"] = [[round(w, 4) for w in row] for row in self.attention]
        if self.warning is not None:
            obj["warning"] = self.warning
        return dump_json(obj)


@dataclass(frozen=True)
class TranslateOptions:
    """What `translate` was asked for, beyond the texts: how to decode and how to show the results."""

    beam_size: int | None  # None: the model's decode.beam_size (with nbest > 1: at least nbest)
    batch_size: int | None  # None: the model's decode.batch_size
    nbest: int  # translations per input; above 1, `score<TAB>translation` blocks
    as_json: bool  # one JSON object per input instead of plain text
    attention_file: Path | None  # draw each input's attention into this image (several inputs: FILE-1.png, ...)
    attention_terminal: bool  # show each input's attention as shaded blocks on stderr
    quiet: bool  # no `attention: FILE` lines

    @property
    def with_attention(self) -> bool:
        return self.attention_file is not None or self.attention_terminal


def translate_results(translator: Translator, texts: Sequence[str], options: TranslateOptions, progress: bool) -> list[Result]:
    """Decode `texts` (the best hypothesis each, with the attention when `options` shows it) into Results."""
    sources = translator.sources(texts)
    hyps = translator.hypotheses(
        sources, options.batch_size, return_attention=options.with_attention, progress=progress, beam_size=options.beam_size
    )
    return make_results(translator, sources, hyps)


def nbest_blocks(translator: Translator, texts: Sequence[str], options: TranslateOptions) -> list[str]:
    """Per text, its `options.nbest` best translations: one JSON object holding `nbest`, or `score<TAB>translation`
    lines and an empty line (an empty text: no translations)."""
    out = []
    for text, block in zip(texts, translator.nbest(translator.sources(texts), options.nbest, options.beam_size, options.batch_size)):
        if options.as_json:
            out.append(dump_json({"input": text, "nbest": [{"output": o, "score": sc} for sc, o in block]}) + "\n")
        else:
            out.append("".join(f"{sc:.4f}\t{o}\n" for sc, o in block) + "\n")
    return out


def make_results(translator: Translator, sources: Sequence[Source], hyps: Sequence[Hypothesis]) -> list[Result]:
    """Pair each source (`Translator.sources`) with its hypothesis (decoded with or without attention)."""
    tgt_vocab = translator.tgt.vocab
    out, unknown_lines = [], []
    for line, (source, hyp) in enumerate(zip(sources, hyps), start=1):
        text = source.text
        if not text.strip():
            out.append(Result(text, "", 0.0, [], [], None if hyp.attention is None else []))
            continue
        tokens = tgt_vocab.decode(hyp.ids)
        attention = None if hyp.attention is None else hyp.attention.float().tolist()
        warning = unknown_warning(source.ids)
        if warning is not None:
            unknown_lines.append(line)
        out.append(Result(text, translator.detokenize(hyp.ids), hyp.score, tokens, source.tokens, attention, warning))
    if unknown_lines:
        log.warning(
            "warning: most tokens of %d input line(s) are unknown to the model's source vocabulary (line %s%s): "
            "is the input written and tokenized as in training?",
            len(unknown_lines), ", ".join(map(str, unknown_lines[:5])), ", ..." if len(unknown_lines) > 5 else "",
        )
    return out


def display_token(token: str) -> str:
    """A token as a person reads it: without the joiner that marks "no space before/after"; a space as ␣."""
    if token == " ":
        return "␣"
    stripped = token.replace(JOINER, "")
    return stripped or token


