"""What `translate` reports for one input: the translation, its score, its tokens and, on request, the attention.

Rendered as one JSON object per line (`--json`), as `score<TAB>translation` n-best blocks, as a compact
heatmap of shaded blocks for the terminal, or drawn into image files (one per input: FILE-1.png, ...).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

from seq2seq.search import Hypothesis
from seq2seq.tokenizer import JOINER
from seq2seq.translator import Translator
from seq2seq.vocab import EOS_TOKEN

SHADES = " ░▒▓█"  # attention weight 0 .. 1 in five steps
_LABEL_WIDTH = 12  # longest row label of the terminal heatmap
_MAX_COLUMN = 8  # widest source column of the terminal heatmap


class Result(NamedTuple):
    input: str
    output: str  # the detokenized translation ("" for an empty input)
    score: float  # sum of the token log-probabilities, <eos> included when produced (beam: / length penalty)
    tokens: list[str]  # target tokens, without <eos>
    src_tokens: list[str]  # source tokens as the model saw them (unknown ones as <unk>), <eos> last
    attention: list[list[float]] | None  # rows: `tokens` (+ <eos> when produced); columns: `src_tokens`

    @property
    def attention_rows(self) -> list[str]:
        """The target token of each attention row: the output tokens, then <eos> when it was produced."""
        if self.attention is None:
            return []
        return (self.tokens + [EOS_TOKEN])[: len(self.attention)]

    def to_json(self) -> str:
        """One line of JSON: input, output, score, tokens; with the attention, src_tokens and attention too."""
        obj: dict[str, object] = {"input": self.input, "output": self.output, "score": self.score, "tokens": self.tokens}
        if self.attention is not None:
            obj["src_tokens"] = self.src_tokens
            obj["attention"] = [[round(w, 4) for w in row] for row in self.attention]
        return json.dumps(obj, ensure_ascii=False)


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
    hyps = translator.hypotheses(
        texts, options.batch_size, return_attention=options.with_attention, progress=progress, beam_size=options.beam_size
    )
    return make_results(translator, texts, hyps)


def nbest_blocks(translator: Translator, texts: Sequence[str], options: TranslateOptions) -> list[str]:
    """Per text, its `options.nbest` best translations: one JSON object holding `nbest`, or `score<TAB>translation`
    lines and an empty line (an empty text: no translations)."""
    out = []
    for text, block in zip(texts, translator.nbest(texts, options.nbest, options.beam_size, options.batch_size)):
        if options.as_json:
            out.append(json.dumps({"input": text, "nbest": [{"output": o, "score": sc} for sc, o in block]}, ensure_ascii=False) + "\n")
        else:
            out.append("".join(f"{sc:.4f}\t{o}\n" for sc, o in block) + "\n")
    return out


def attention_image_path(base: Path, index: int, count: int) -> Path:
    """Where the attention of input `index` (from 0) of `count` is drawn: `base` itself for one input, else BASE-i.EXT."""
    return base if count == 1 else base.with_name(f"{base.stem}-{index + 1}{base.suffix}")


def save_attention_plot(result: Result, path: Path) -> None:
    """Draw the attention of `result` into the image `path` (needs the plot extra), titled `input → output`."""
    from seq2seq.extras.plot import plot_attention

    title = f"{result.input}  \u2192  {result.output}"
    plot_attention(
        [display_token(x) for x in result.src_tokens], [display_token(x) for x in result.attention_rows], result.attention, path,
        title if len(title) <= 90 else title[:89] + "\u2026",
    )


def make_results(translator: Translator, texts: Sequence[str], hyps: Sequence[Hypothesis]) -> list[Result]:
    """Pair each text with its hypothesis (decoded with or without attention)."""
    src_vocab, tgt_vocab = translator.src.vocab, translator.tgt.vocab
    out = []
    for text, hyp in zip(texts, hyps):
        if not text.strip():
            out.append(Result(text, "", 0.0, [], [], None if hyp.attention is None else []))
            continue
        tokens = tgt_vocab.decode(hyp.ids)
        # the tokens the model read: a long input was truncated to decode.max_src_len (see Translator.encode_sources)
        src_tokens = src_vocab.decode(translator.src.ids(text)[: translator.cfg.decode.max_src_len]) + [EOS_TOKEN]
        attention = None if hyp.attention is None else hyp.attention.float().tolist()
        out.append(Result(text, translator.detokenize(hyp.ids), hyp.score, tokens, src_tokens, attention))
    return out


def display_token(token: str) -> str:
    """A token as a person reads it: without the joiner that marks "no space before/after"; a space as ␣."""
    if token == " ":
        return "␣"
    stripped = token.replace(JOINER, "")
    return stripped or token


def _shade(weight: float) -> str:
    return SHADES[min(int(weight * len(SHADES)), len(SHADES) - 1)]


def terminal_heatmap(result: Result, width: int | None = None) -> str:
    """The attention of `result` as rows of shaded blocks: a row per target token, a column per source token.

    Columns are as wide as their source token (up to 8 characters); when that does not fit in `width`
    (default: the terminal's), columns shrink to two characters, numbered, with a legend of the tokens.
    """
    if not result.attention:
        return ""
    width = width or shutil.get_terminal_size((100, 24)).columns
    rows = [display_token(t) for t in result.attention_rows]
    cols = [display_token(t) for t in result.src_tokens]
    label = min(max(len(r) for r in rows), _LABEL_WIDTH)
    widths = [min(max(len(c), 2), _MAX_COLUMN) for c in cols]
    legend = ""
    if label + 1 + sum(w + 1 for w in widths) > width:
        widths = [2] * len(cols)
        legend = "  ".join(f"{i}:{c}" for i, c in enumerate(cols, start=1))
        cols = [str(i)[-2:] for i in range(1, len(cols) + 1)]
    lines = [" " * label + " " + " ".join(c[:w].ljust(w) for c, w in zip(cols, widths))]
    for name, weights in zip(rows, result.attention):
        cells = " ".join(_shade(x) * w for x, w in zip(weights, widths))
        lines.append(f"{name[:label].rjust(label)} {cells}")
    if legend:
        lines.append(legend)
    lines.append(f"{' ' * label} weight: {' '.join(f'{s}{s}={i / len(SHADES):.1f}+' for i, s in enumerate(SHADES) if i)}")
    return "\n".join(lines)
