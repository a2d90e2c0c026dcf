"""`translate`'s request and its results with a checkpoint: what the user asked for (TranslateOptions) and the
Translator's hypotheses made into data/results.Result records (the text side, which needs no torch, lives there)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from seq2seq.data.results import Result, make_results

if TYPE_CHECKING:
    from seq2seq.decode.translator import Translator


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
