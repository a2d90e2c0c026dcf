"""Reversible tokenization: `detokenize(tokenize(s)) == s` for any `s` with normalized whitespace.

`word` level splits text into runs of word characters (letters, digits, `_`, combining marks) and single
punctuation characters. Where two pieces were written without a space between them, the punctuation side
carries the joiner `￭` (as in OpenNMT's tokenizer): "Hello, world." -> ["Hello", "￭,", "world", "￭."].
Words themselves never carry a joiner, so the vocabulary does not double. A literal `￭` in the text is
written as the token `<￭>` so that even it survives the round trip.

`char` level: one token per character, a space being the token " ".

`space` level: the whitespace-separated pieces as they are (pre-tokenized symbols: phonemes, tags, code tokens),
joined with one space.

Each side has its own level (`data.src_level`, `data.tgt_level`; `data.levels`), so characters may translate into
symbols.

`bpe` / `unigram` levels: sentencepiece subwords ("▁Hello", ",", "▁world", "."), the model trained on the
training data by seq2seq.data.subword and carried by the Tokenizer itself (its serialized bytes), so a checkpoint
tokenizes exactly as in training. Identity normalization and byte fallback make the decode exact; a literal
`▁` (sentencepiece's space mark) is escaped before encoding (see `sp_escape`).

BLEU is computed on `detokenize` output against the raw references, so no Moses scripts are needed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Sequence

from seq2seq.config import DataConfig, choices

JOINER = "\uffed"  # ￭
_ESCAPED_JOINER = f"<{JOINER}>"
_PIECE = re.compile(r"\w+|\S")
SUBWORD_LEVELS = ("bpe", "unigram")
LEVELS = choices("data", "level")  # config.py holds the choices


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


_SP_SPACE = "\u2581"  # ▁, which sentencepiece reads as a space
_SP_ESC = "\uf581"  # a private-use character: ESC ESC is a literal ESC, ESC "_" is a literal ▁
_SP_UNESCAPE = re.compile(f"{_SP_ESC}[{_SP_ESC}_]")


def sp_escape(text: str) -> str:
    """Hide literal `▁` from sentencepiece, reversibly (`sp_unescape(sp_escape(s)) == s`)."""
    if _SP_ESC not in text and _SP_SPACE not in text:
        return text
    return text.replace(_SP_ESC, _SP_ESC + _SP_ESC).replace(_SP_SPACE, _SP_ESC + "_")


def sp_unescape(text: str) -> str:
    if _SP_ESC not in text:
        return text
    return _SP_UNESCAPE.sub(lambda m: _SP_ESC if m.group()[1] == _SP_ESC else _SP_SPACE, text)


def normalize(text: str, lowercase: bool) -> str:
    """The text every level tokenizes (and sentencepiece trains on): whitespace normalized, maybe lowercased."""
    text = normalize_whitespace(text)
    return text.lower() if lowercase else text


@dataclass(frozen=True)
class Tokenizer:
    """Turns text into tokens and back. Settings are stored in the checkpoint with the vocabularies.

    `sp_model` is the serialized sentencepiece model of the `bpe` / `unigram` levels (None for the others).
    """

    level: str = "word"
    lowercase: bool = False
    sp_model: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown tokenizer level {self.level!r} (valid: {', '.join(LEVELS)})")
        if (self.level in SUBWORD_LEVELS) != (self.sp_model is not None):
            raise ValueError(f"tokenizer level {self.level!r} {'needs' if self.sp_model is None else 'takes no'} sentencepiece model")
        if self.sp_model is not None:
            import sentencepiece

            processor = sentencepiece.SentencePieceProcessor()
            try:
                processor.LoadFromSerializedProto(self.sp_model)
            except (RuntimeError, OSError) as e:
                raise ValueError(f"not a sentencepiece model ({e})") from None
            object.__setattr__(self, "_sp", processor)  # frozen: a cache, not a field

    def tokenize(self, text: str) -> list[str]:
        text = normalize(text, self.lowercase)
        if self.sp_model is not None:
            return self._sp.encode(sp_escape(text), out_type=str) if text else []  # type: ignore[attr-defined]
        if self.level == "char":
            return list(text)
        if self.level == "space":
            return text.split(" ") if text else []  # normalized: single spaces, no ends
        return tokenize_words(text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        if self.sp_model is not None:
            return sp_unescape(self._sp.decode_pieces(list(tokens)))  # type: ignore[attr-defined]
        if self.level == "char":
            return "".join(tokens)
        if self.level == "space":
            return " ".join(tokens)
        return detokenize_words(tokens)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the checkpoint; the sentencepiece model as a uint8 tensor (weights_only loading)."""
        d: dict[str, Any] = {"level": self.level, "lowercase": self.lowercase}
        if self.sp_model is not None:
            import torch

            d["sp_model"] = torch.frombuffer(bytearray(self.sp_model), dtype=torch.uint8)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Tokenizer":
        sp = d.get("sp_model")
        sp_model = None
        if sp is not None:
            import torch

            if not isinstance(sp, torch.Tensor) or sp.dtype != torch.uint8 or sp.dim() != 1:
                raise ValueError("sp_model: expected a 1-D uint8 tensor")
            sp_model = bytes(sp.tolist())
        return cls(level=str(d["level"]), lowercase=bool(d["lowercase"]), sp_model=sp_model)


def subword_keys(levels: tuple[str, str]) -> tuple[str, ...]:
    """The sentencepiece keys that decide the tokenizers of these (source, target) levels (`DataConfig.levels`):
    `vocab_size` where a side is a subword level, `sp_shared` too where both are the same one (one joint model:
    data/subword.joint). None for word, char and space sides, which nothing trains: two configs that differ only in
    a key not named here tokenize alike (fine-tuning and the shards compare what matters, not raw keys)."""
    src_level, tgt_level = levels
    if src_level not in SUBWORD_LEVELS and tgt_level not in SUBWORD_LEVELS:
        return ()
    return ("vocab_size", "sp_shared") if src_level == tgt_level else ("vocab_size",)


def plain_tokenizers(d: DataConfig) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers of the levels that need no trained model (`word`, `char`, `space`)."""
    src_level, tgt_level = d.levels
    if src_level in SUBWORD_LEVELS or tgt_level in SUBWORD_LEVELS:
        raise ValueError(f"levels {src_level} / {tgt_level}: a subword level needs its trained model (data/subword.py)")
    src = Tokenizer(src_level, d.lowercase)
    return src, (src if tgt_level == src_level else Tokenizer(tgt_level, d.lowercase))
