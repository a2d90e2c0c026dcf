"""Vocabulary: token <-> id, with the special ids as named constants."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from seq2seq.errors import DataError
from seq2seq.files import atomic_write_text

if TYPE_CHECKING:
    from seq2seq.data.corpus import Pair
    from seq2seq.data.tokenizer import Tokenizer

log = logging.getLogger("seq2seq")

PAD, UNK, BOS, EOS = 0, 1, 2, 3
PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN)


class Vocab:
    """An ordered list of tokens; ids 0..3 are always <pad>, <unk>, <bos>, <eos>."""

    def __init__(self, itos: Sequence[str]):
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise DataError(f"vocabulary must start with {', '.join(SPECIALS)}")
        if len(set(itos)) != len(itos):
            raise DataError("vocabulary holds a token twice")
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, counts: Counter[str], min_freq: int = 1, max_size: int | None = None) -> "Vocab":
        """Most frequent first, ties broken alphabetically so the result does not depend on corpus order."""
        items = sorted(((t, c) for t, c in counts.items() if c >= min_freq and t not in SPECIALS), key=lambda tc: (-tc[1], tc[0]))
        if max_size is not None:
            items = items[:max_size]
        return cls(list(SPECIALS) + [t for t, _ in items])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def encode(self, tokens: Iterable[str]) -> list[int]:
        get = self.stoi.get
        return [get(t, UNK) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens for `ids`, stopping at <eos> and skipping <pad> / <bos>."""
        out: list[str] = []
        for i in ids:
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.itos[i])
        return out

    def to_list(self) -> list[str]:
        return list(self.itos)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.itos, ensure_ascii=False, indent=0) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        path = Path(path)
        try:
            itos = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: vocabulary file not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: not a vocabulary JSON file ({e})") from None
        if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
            raise DataError(f"{path}: expected a JSON list of tokens")
        try:
            return cls(itos)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None


# ---- vocabularies -----------------------------------------------------------------------------------------


def vocabs_from_counts(
    src_counts: Counter[str], tgt_counts: Counter[str], min_freq: int, max_size: int | None, shared: bool
) -> tuple[Vocab, Vocab]:
    """Source and target vocabularies from token counts (one joint vocabulary, of the summed counts, when `shared`)."""
    if shared:
        joint = Vocab.build(src_counts + tgt_counts, min_freq, max_size)
        return joint, joint
    return Vocab.build(src_counts, min_freq, max_size), Vocab.build(tgt_counts, min_freq, max_size)


def build_vocabs(
    pairs: Iterable[Pair], tokenizer: Tokenizer, min_freq: int, max_size: int | None, shared: bool, progress: bool = False,
    tgt_tokenizer: Tokenizer | None = None,
) -> tuple[Vocab, Vocab]:
    """Source and target vocabularies from training pairs (one joint vocabulary when `shared`).

    `tgt_tokenizer` (None: `tokenizer`) tokenizes the target side, for per-side subword models.
    """
    import sys

    from tqdm import tqdm

    src_counts: Counter[str] = Counter()
    tgt_counts: Counter[str] = Counter()
    bar = tqdm(pairs, desc="vocabulary", unit=" pairs", disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True)
    for s, t in bar:
        src_counts.update(tokenizer.tokenize(s))
        tgt_counts.update((tgt_tokenizer or tokenizer).tokenize(t))
    return vocabs_from_counts(src_counts, tgt_counts, min_freq, max_size, shared)


def save_vocabs(src_vocab: Vocab, tgt_vocab: Vocab, src_path: Path, tgt_path: Path) -> None:
    """Save freshly built vocabularies and log `vocabulary: N source, M target types -> DIR`."""
    src_vocab.save(src_path)
    tgt_vocab.save(tgt_path)
    log.info("vocabulary: %d source, %d target types -> %s", len(src_vocab), len(tgt_vocab), Path(src_path).parent)
