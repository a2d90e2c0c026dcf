"""What translate and serve report for one input decoded through an export: the text side of decode/results.Result
(the same fields and JSON), without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Sequence

from seq2seq.data.vocab import EOS_TOKEN
from seq2seq.files import dump_json

if TYPE_CHECKING:
    from seq2seq.runtime.search import Hypothesis
    from seq2seq.runtime.translator import ExportTranslator


class Result(NamedTuple):
    input: str
    output: str
    score: float
    tokens: list[str]
    src_tokens: list[str]
    attention: list[list[float]] | None

    @property
    def attention_rows(self) -> list[str]:
        if self.attention is None:
            return []
        return (self.tokens + [EOS_TOKEN])[: len(self.attention)]

    def to_json(self) -> str:
        """One line of JSON, as decode/results.Result.to_json writes it."""
        obj: dict[str, object] = {"input": self.input, "output": self.output, "score": self.score, "tokens": self.tokens}
        if self.attention is not None:
            obj["src_tokens"] = self.src_tokens
            obj["attention"] = [[round(w, 4) for w in row] for row in self.attention]
        return dump_json(obj)


def make_results(t: ExportTranslator, texts: Sequence[str], hyps: Sequence[Hypothesis]) -> list[Result]:
    """Pair each text with its hypothesis (as decode/results.make_results)."""
    out = []
    for text, hyp in zip(texts, hyps):
        if not text.strip():
            out.append(Result(text, "", 0.0, [], [], None if hyp.attention is None else []))
            continue
        src_tokens = t.src.vocab.decode(t.src.ids(text)[: t.cfg.decode.max_src_len]) + [EOS_TOKEN]
        attention = None if hyp.attention is None else hyp.attention.astype(float).tolist()
        out.append(Result(text, t.detokenize(hyp.ids), hyp.score, t.tgt.vocab.decode(hyp.ids), src_tokens, attention))
    return out


def nbest_blocks(t: ExportTranslator, texts: Sequence[str], nbest: int, beam: int | None, batch: int | None, as_json: bool) -> list[str]:
    """Per text, its `nbest` best translations, as decode/results.nbest_blocks writes them."""
    out = []
    for text, block in zip(texts, t.nbest(texts, nbest, beam, batch)):
        if as_json:
            out.append(dump_json({"input": text, "nbest": [{"output": o, "score": sc} for sc, o in block]}) + "\n")
        else:
            out.append("".join(f"{sc:.4f}\t{o}\n" for sc, o in block) + "\n")
    return out
