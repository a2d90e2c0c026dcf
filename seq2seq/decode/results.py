"""What a translation reports, made from the Translator's hypotheses: data/results.Result records (one JSON object
per input with --json) and n-best blocks (`score<TAB>translation` lines). No torch: the same for every model."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

from seq2seq.data.encoding import Source
from seq2seq.data.report import unknown_warning
from seq2seq.data.results import Result
from seq2seq.decode.search import Hypothesis
from seq2seq.files import dump_json

if TYPE_CHECKING:
    from seq2seq.decode.translator import Translator

log = logging.getLogger("seq2seq")


def translate_results(
    translator: Translator, texts: Sequence[str], *, beam_size: int | None, batch_size: int | None, attention: bool,
    progress: bool,
) -> list[Result]:
    """Decode `texts` (the best hypothesis each, with the attention when asked) into Results; beam_size / batch_size
    None: the model's."""
    sources = translator.sources(texts)
    hyps = translator.hypotheses(sources, batch_size, return_attention=attention, progress=progress, beam_size=beam_size)
    return make_results(translator, sources, hyps)


def make_results(translator: Translator, sources: Sequence[Source], hyps: Sequence[Hypothesis], warn_unknown: bool = True) -> list[Result]:
    """Pair each source (`translator.sources`) with its hypothesis (decoded with or without attention).

    An input whose tokens are mostly unknown gets `Result.warning`; `warn_unknown` also logs one warning naming
    those lines (the server leaves it out and answers the warning per sentence: line numbers of a merged batch
    would mean nothing)."""
    out, unknown_lines = [], []
    for line, (source, hyp) in enumerate(zip(sources, hyps), start=1):
        text = source.text
        if not text.strip():
            out.append(Result(text, "", 0.0, [], [], None if hyp.attention is None else []))
            continue
        tokens = translator.tgt.vocab.decode(hyp.ids)
        attention = None if hyp.attention is None else hyp.attention.tolist()
        warning = unknown_warning(source.ids)
        if warning is not None:
            unknown_lines.append(line)
        out.append(Result(text, translator.detokenize(hyp.ids), hyp.score, tokens, source.tokens, attention, warning))
    if warn_unknown and unknown_lines:
        log.warning(
            "warning: most tokens of %d input line(s) are unknown to the model's source vocabulary (line %s%s): "
            "is the input written and tokenized as in training?",
            len(unknown_lines), ", ".join(map(str, unknown_lines[:5])), ", ..." if len(unknown_lines) > 5 else "",
        )
    return out


def nbest_blocks(
    translator: Translator, texts: Sequence[str], nbest: int, beam_size: int | None, batch_size: int | None, as_json: bool
) -> list[str]:
    """Per text, its `nbest` best translations: one JSON object holding `nbest` (`as_json`), or `score<TAB>translation`
    lines and an empty line (an empty text: no translations). beam_size / batch_size None: the model's."""
    out = []
    for text, block in zip(texts, translator.nbest(translator.sources(texts), nbest, beam_size, batch_size)):
        if as_json:
            out.append(dump_json({"input": text, "nbest": [{"output": o, "score": sc} for sc, o in block]}) + "\n")
        else:
            out.append("".join(f"{sc:.4f}\t{o}\n" for sc, o in block) + "\n")
    return out
