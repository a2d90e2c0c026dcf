"""Reversible tokenization: `detokenize(tokenize(s)) == s` for any `s` with normalized whitespace.

`word` level splits text into runs of word characters (letters, digits, `_`, combining marks) and single
punctuation characters. Where two pieces were written without a space between them, the punctuation side
carries the joiner `￭` (as in OpenNMT's tokenizer): "Hello, world." -> ["Hello", "￭,", "world", "￭."].
Words themselves never carry a joiner, so the vocabulary does not double. A literal `￭` in the text is
written as the token `<￭>` so that even it survives the round trip.

`char` level: one token per character, a space being the token " ".

BLEU is computed on `detokenize` output against the raw references, so no Moses scripts are needed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

JOINER = "\uffed"  # ￭
_ESCAPED_JOINER = f"<{JOINER}>"
_PIECE = re.compile(r"\w+|\S")
LEVELS = ("word", "char")


def normalize_whitespace(text: str) -> str:
    """Collapse every run of whitespace to one space and strip both ends."""
    return " ".join(text.split())


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_" or unicodedata.category(c)[0] == "M"


def _split_chunk(chunk: str) -> list[str]:
    """Split a whitespace-free chunk into maximal word runs and single punctuation characters."""
    pieces: list[str] = []
    for match in _PIECE.finditer(chunk):
        piece = match.group()
        # `\w` excludes combining marks: glue a mark (and the word after it) to the word before it.
        if pieces and _is_word_char(piece[0]) and _is_word_char(pieces[-1][-1]):
            pieces[-1] += piece
        else:
            pieces.append(piece)
    return pieces


def _is_word(piece: str) -> bool:
    return _is_word_char(piece[0])


def tokenize_words(text: str) -> list[str]:
    tokens: list[str] = []
    for chunk in text.split():
        if chunk.isalnum():  # the common case, one plain word (isalnum is exactly `\w` less "_"): nothing to split or mark
            tokens.append(chunk)
            continue
        pieces = _split_chunk(chunk)
        marked = [_ESCAPED_JOINER if p == JOINER else p for p in pieces]
        for i in range(1, len(pieces)):
            # pieces[i-1] and pieces[i] touch: mark the punctuation side (a word never carries a joiner).
            if not _is_word(pieces[i]):
                marked[i] = JOINER + marked[i]
            else:
                marked[i - 1] = marked[i - 1] + JOINER
        tokens.extend(marked)
    return tokens


def detokenize_words(tokens: Sequence[str]) -> str:
    out: list[str] = []
    glue_next = False
    for token in tokens:
        glue_before = token.startswith(JOINER) and len(token) > 1
        core = token[1:] if glue_before else token
        glue_after = core.endswith(JOINER) and len(core) > 1
        core = core[:-1] if glue_after else core
        if core == _ESCAPED_JOINER:
            core = JOINER
        if out and not (glue_before or glue_next):
            out.append(" ")
        out.append(core)
        glue_next = glue_after
    return "".join(out)


@dataclass(frozen=True)
class Tokenizer:
    """Turns text into tokens and back. Settings are stored in the checkpoint with the vocabularies."""

    level: str = "word"
    lowercase: bool = False

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown tokenizer level {self.level!r} (valid: {', '.join(LEVELS)})")

    def tokenize(self, text: str) -> list[str]:
        text = normalize_whitespace(text)
        if self.lowercase:
            text = text.lower()
        if self.level == "char":
            return list(text)
        return tokenize_words(text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        if self.level == "char":
            return "".join(tokens)
        return detokenize_words(tokens)

    def to_dict(self) -> dict[str, object]:
        return {"level": self.level, "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> "Tokenizer":
        return cls(level=str(d["level"]), lowercase=bool(d["lowercase"]))
