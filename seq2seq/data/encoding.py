"""Text -> ids, without torch: one side's Encoder, the source end (<eos>), the source lines of a translation.

Everything that turns a line into the ids a model reads lives here, so that translating with an export
(seq2seq/runtime, no torch) encodes exactly as training and `translate --model RUN` do. data/batch.py pads
these ids into tensors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from seq2seq.data.corpus import Pair, check_length_filter, within_max_len
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import EOS, EOS_TOKEN, Vocab

log = logging.getLogger("seq2seq")

Example = tuple[list[int], list[int]]  # (source ids ending in SOURCE_END, target ids without specials)

SOURCE_END: tuple[int, ...] = (EOS,)  # what every source ends with as the encoder reads it


def with_source_end(ids: Sequence[int]) -> list[int]:
    """A source's token ids as the model reads them: followed by SOURCE_END (<eos>)."""
    return [*ids, *SOURCE_END]


@dataclass(frozen=True)
class Encoder:
    """Text -> ids for one side (tokenizer + vocabulary)."""

    tokenizer: Tokenizer
    vocab: Vocab

    def ids(self, text: str) -> list[int]:
        """The text's token ids, no specials."""
        return self.vocab.encode(self.tokenizer.tokenize(text))

    def source_ids(self, text: str) -> list[int]:
        """The text as a source the model reads: its ids followed by <eos>."""
        return with_source_end(self.ids(text))

    def text(self, ids: Sequence[int]) -> str:
        """Output ids as one line of text (specials dropped, detokenized). A line break inside an output would shift
        every later line of a translated file, so any becomes a space."""
        return self.tokenizer.detokenize(self.vocab.decode(ids)).replace("\r", " ").replace("\n", " ")

    def source(self, text: str, max_len: int) -> "Source":
        """A source line as a translation reads it, tokenized once: its ids (at most `max_len` tokens, then <eos>),
        their tokens and the length it had before truncation."""
        ids = self.ids(text)
        kept = ids[:max_len]
        return Source(text, with_source_end(kept), [*(self.vocab.itos[i] for i in kept), EOS_TOKEN], len(ids))


class Source(NamedTuple):
    """One input line on its way to a translation (`Encoder.source`)."""

    text: str  # the line as given
    ids: list[int]  # token ids as the model reads them: truncated to the limit, <eos> last
    tokens: list[str]  # the tokens of `ids` as the model saw them (unknown ones as <unk>), <eos> last
    length: int  # tokens in the line before truncation, <eos> not counted

    @property
    def truncated(self) -> bool:
        return self.length > len(self.ids) - len(SOURCE_END)


def encode_sources(src: Encoder, texts: Sequence[str], max_len: int, warn_truncated: bool = True) -> list[Source]:
    """Each text as a model reads it, tokenized once (`Encoder.source`): ids ending in <eos>, truncated to `max_len`
    tokens (decode.max_src_len). The one way to a translation's sources, with a checkpoint or an export.

    `warn_truncated`: log one warning naming the truncated lines (the server reports truncation in each answer
    instead: line numbers of a merged batch would mean nothing)."""
    sources = [src.source(text, max_len) for text in texts]
    long_lines = [i for i, source in enumerate(sources, start=1) if source.truncated]
    if warn_truncated and long_lines:
        log.warning(
            "warning: %d input line(s) longer than decode.max_src_len=%d tokens were truncated (line %s%s)",
            len(long_lines), max_len, ", ".join(map(str, long_lines[:5])), ", ..." if len(long_lines) > 5 else "",
        )
    return sources


def encode_pairs(pairs: Sequence[Pair], src: Encoder, tgt: Encoder, max_len: int | None = None) -> list[Example]:
    """Encode pairs; with `max_len` (training only) drop pairs whose either side has more tokens."""
    examples = []
    for s, t in pairs:
        s_ids, t_ids = src.ids(s), tgt.ids(t)
        if within_max_len(len(s_ids), len(t_ids), max_len):
            examples.append((with_source_end(s_ids), t_ids))
    check_length_filter(len(pairs), len(examples), max_len)
    return examples
