"""Known words: a lexicon (one TSV file of source<TAB>target lines, plain or .gz) that a G2P front end looks up
before it runs the model, the model pronouncing only the words it lacks (`--lexicon` of translate, eval and serve).

A source with several lines has several targets: the first in the file is the answer, all of them in file order
are its n-best. Sources and inputs are compared whitespace-normalized, as the corpus reader reads them. No torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from seq2seq.data.corpus import iter_pairs
from seq2seq.data.tokenizer import normalize_whitespace
from seq2seq.errors import DataError


class Lexicon(NamedTuple):
    path: Path
    entries: dict[str, tuple[str, ...]]  # source -> its distinct targets, the answer first



def read_lexicon(path: str | Path) -> Lexicon:
    """The lexicon at `path`; a missing file, a line without a tab, non-UTF-8 bytes or no entries: a DataError
    naming the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--lexicon {path}: no such file" if not path.exists() else f"--lexicon {path}: is not a file")
    entries: dict[str, list[str]] = {}
    for src, tgt in iter_pairs([path]):
        if src and tgt and tgt not in entries.setdefault(src, []):
            entries[src].append(tgt)
    if not entries:
        raise DataError(f"--lexicon {path}: holds no source<TAB>target line")
    return Lexicon(path, {src: tuple(tgts) for src, tgts in entries.items()})
