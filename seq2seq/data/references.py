"""Evaluation data: each source once, with one or several references.

A G2P lexicon lists several pronunciations of one word, a test set several translations of one sentence: the model
is right when it gives any of them. So evaluation scores *items* (a source and its references), while the loss and
perplexity stay over every (source, reference) line, as training reads them. Which lines make one item is decided
here, once, for every caller (`eval`, validation during training, the data report):

- TSV data: the lines that share a source (whitespace normalized) are one item, in the order of their first line,
  its references in line order (`group_references`);
- parallel files: each line is an item with one reference, or with one from each reference file when `eval` is
  given several `--ref` files (`read_references`). Lines that share a source stay separate items, so that a parallel
  corpus scores exactly as before several references existed.

A reference that repeats within an item counts once: TER divides by the mean length of an item's references, which a
repeated one would weigh twice. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from seq2seq.data.corpus import Pair, check_nonempty, corpus_name, drop_empty, iter_pairs, load_corpus, read_chunks
from seq2seq.data.tokenizer import normalize_whitespace
from seq2seq.errors import DataError

if TYPE_CHECKING:
    from seq2seq.config import DataConfig


@dataclass(frozen=True)
class Item:
    """One thing the model is scored on: a source and every reference that counts as right (at least one)."""

    src: str
    refs: tuple[str, ...]


@dataclass(frozen=True)
class EvalSet:
    """What an evaluation reads: `items` (the scores are over these) and `pairs`, every (source, reference) line in
    file order (the loss and perplexity are over these)."""

    items: list[Item]
    pairs: list[Pair]

    @property
    def max_references(self) -> int:
        """The most references of one item (0 for no items)."""
        return max((len(item.refs) for item in self.items), default=0)

    @property
    def n_several(self) -> int:
        """How many items have several references."""
        return sum(len(item.refs) > 1 for item in self.items)


def _distinct(refs: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(refs))


def one_reference_each(pairs: Sequence[Pair]) -> EvalSet:
    """Each pair its own item with one reference (parallel files with one `--ref`)."""
    return EvalSet([Item(src, (tgt,)) for src, tgt in pairs], list(pairs))


def group_references(pairs: Sequence[Pair]) -> EvalSet:
    """TSV data: the pairs that share a source are one item with their references (distinct, in line order); items in
    the order of their first line."""
    refs: dict[str, list[str]] = {}
    for src, tgt in pairs:
        refs.setdefault(src, []).append(tgt)
    return EvalSet([Item(src, _distinct(tgts)) for src, tgts in refs.items()], list(pairs))


def eval_set(pairs: Sequence[Pair], fmt: str) -> EvalSet:
    """The pairs of a corpus in `fmt` (data.format) as items: grouped by source for tsv, one each for parallel."""
    return group_references(pairs) if fmt == "tsv" else one_reference_each(pairs)


def load_eval_corpus(data_cfg: DataConfig, split: str) -> EvalSet:
    """The config's evaluation corpus `split` ("valid" or "test"), pairs with an empty side dropped, as items."""
    return eval_set(load_corpus(data_cfg, split), data_cfg.format)


def read_tsv_references(path: Path, data_cfg: DataConfig) -> EvalSet:
    """Any TSV file (`eval --data`) as items grouped by source; pairs with an empty side dropped. `data_cfg` names
    the languages, for the hint when `path` is the prefix of parallel files."""
    src, tgt = (Path(f"{path}.{lang}") for lang in (data_cfg.src_lang, data_cfg.tgt_lang))
    if not path.exists() and src.exists() and tgt.exists():
        raise DataError(f"{path}: file not found; {src} and {tgt} look like parallel files: score them with --src {src} --ref {tgt}")
    return group_references(drop_empty(iter_pairs([path]), "eval", str(path)))


def read_references(src_path: Path, ref_paths: Sequence[Path]) -> EvalSet:
    """A source file and one or more reference files, aligned line by line (a file with another line count is an
    error naming it and both counts): line i of each is a reference of source line i.

    An empty reference is left out of its item; a line with an empty source or no reference is dropped, as a pair
    with an empty side is. With one reference file this is exactly `one_reference_each` of the non-empty pairs.
    """
    paths = [src_path, *ref_paths]
    items: list[Item] = []
    pairs: list[Pair] = []
    n_lines = 0
    for chunk in read_chunks(paths):
        for texts in zip(*(lines.decoded() for lines in chunk)):
            n_lines += 1
            src, *refs = (normalize_whitespace(text) for text in texts)
            kept = [ref for ref in refs if ref] if src else []
            if kept:
                items.append(Item(src, _distinct(kept)))
                pairs.extend((src, ref) for ref in kept)
    check_nonempty("eval", n_lines, len(items), corpus_name(paths))
    return EvalSet(items, pairs)
