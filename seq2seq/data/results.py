"""What a translation reports for one input, without torch: the translation, its score, its tokens and, on
request, the attention; the same records whether a checkpoint (decode/translator) or an export (runtime/translator)
decoded them.

Rendered as one JSON object per line (`--json`), as `score<TAB>translation` n-best blocks, as a compact
heatmap of shaded blocks for the terminal, or drawn into image files (one per input: FILE-1.png, ...).
`files.dump_json` is how every JSON line of the CLI is written (translate, eval, info): never NaN or Infinity.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple, Protocol, Sequence

from seq2seq.data.encoding import Encoder, Source
from seq2seq.data.report import unknown_warning
from seq2seq.data.tokenizer import JOINER
from seq2seq.data.vocab import EOS_TOKEN
from seq2seq.errors import ConfigError
from seq2seq.files import dump_json

log = logging.getLogger("seq2seq")


class Hypothesis(Protocol):
    """A decoded sentence as decode/search and runtime/search return it."""

    @property
    def ids(self) -> list[int]: ...  # target ids, without <eos>

    @property
    def score(self) -> float: ...

    @property
    def attention(self) -> Any: ...  # None, or (steps, S) weights: a torch tensor or a numpy array (anything with .tolist())


class Decodes(Protocol):
    """What the results need of a translator: decode/translator.Translator or runtime/translator.ExportTranslator."""

    @property
    def tgt(self) -> Encoder: ...

    def sources(self, texts: Sequence[str], warn_truncated: bool = True) -> list[Source]: ...

    def nbest(
        self, sources: Sequence[Source], nbest: int, beam_size: int | None = None, batch_size: int | None = None
    ) -> list[list[tuple[float, str]]]: ...

    def detokenize(self, ids: Sequence[int]) -> str: ...


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


def make_results(translator: Decodes, sources: Sequence[Source], hyps: Sequence[Hypothesis], warn_unknown: bool = True) -> list[Result]:
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


def nbest_beam(nbest: int, beam_size: int | None, default_beam: int) -> int:
    """The beam an n-best list is searched with: `beam_size`, else the larger of the model's and `nbest`."""
    beam = beam_size or max(default_beam, nbest)
    if nbest > beam:
        raise ConfigError(f"--nbest {nbest} needs a beam at least as large (--beam {beam})")
    return beam


def nbest_texts(
    sources: Sequence[Source], nbests: Sequence[Sequence[Hypothesis]], text: Callable[[Sequence[int]], str]
) -> list[list[tuple[float, str]]]:
    """(score, translation) pairs per source, best first, from the searches' n-best lists; an empty text gives none."""
    return [[(h.score, text(h.ids)) for h in hyps] if source.text.strip() else [] for source, hyps in zip(sources, nbests)]


def nbest_blocks(
    translator: Decodes, texts: Sequence[str], nbest: int, beam_size: int | None, batch_size: int | None, as_json: bool
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


def display_token(token: str) -> str:
    """A token as a person reads it: without the joiner that marks "no space before/after"; a space as ␣."""
    if token == " ":
        return "␣"
    stripped = token.replace(JOINER, "")
    return stripped or token
