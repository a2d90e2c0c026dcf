"""What a translation reports for one input, without torch: the translation, its score, its tokens and, on
request, the attention; the same records whatever model decoded them (decode/results makes them).

Rendered as one JSON object per line (`--json`), as a compact heatmap of shaded blocks for the terminal, or drawn
into image files (one per input: FILE-1.png, ...).
`files.dump_json` is how every JSON line of the CLI is written (translate, eval, info): never NaN or Infinity.
"""

from __future__ import annotations

from typing import NamedTuple

from seq2seq.data.tokenizer import JOINER
from seq2seq.data.vocab import EOS_TOKEN
from seq2seq.files import dump_json


class Result(NamedTuple):
    input: str
    output: str  # the detokenized translation ("" for an empty input)
    score: float  # sum of the token log-probabilities, <eos> included when produced (decode/search: no length penalty)
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


def display_token(token: str) -> str:
    """A token as a person reads it: without the joiner that marks "no space before/after"; a space as ␣."""
    if token == " ":
        return "␣"
    stripped = token.replace(JOINER, "")
    return stripped or token
