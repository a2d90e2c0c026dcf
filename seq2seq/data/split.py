"""One TSV file -> train.tsv, val.tsv and test.tsv (`seq2seq split`), grouped by source.

A lexicon or a corpus with several targets per source (pronunciations, translations) split line by line would put
one pronunciation of a word in training and another in the test set: the test then measures memory, not
generalisation. So a source goes, with all of its lines, to one split. `--valid` and `--test` count distinct
sources (N) or a share of them (a FRACTION); the rest is training data. Which sources go where is drawn once from
the seed: the same file and seed give the same files. Lines keep their order within a split and their text as read
(line ends become `\\n`); they are read by data/corpus's rules, so a bad line is an error naming file:line.

The source that groups lines is the one evaluation groups by (data/references): the first column, whitespace
normalized. Torch-free.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from seq2seq.data.corpus import open_corpus, read_chunks, split_tsv_line
from seq2seq.errors import ConfigError, DataError
from seq2seq.files import atomic_write_text

SPLIT_FILES = {"train": "train.tsv", "val": "val.tsv", "test": "test.tsv"}  # the splits, in the order they are reported


@dataclass(frozen=True)
class Amount:
    """How many sources `--valid` or `--test` asks for: a count, or a share in (0, 1)."""

    count: int | None = None
    share: float | None = None

    def of(self, n_sources: int) -> int:
        """The number of sources out of `n_sources`; a share rounds to the nearest count, at least 1."""
        if self.count is not None:
            return self.count
        assert self.share is not None
        return max(1, int(self.share * n_sources + 0.5))


def parse_amount(text: str, option: str) -> Amount:
    """`--valid 500` (sources) or `--valid 0.05` (a share of them); anything else is a ConfigError naming `option`."""
    try:
        if text.strip().lstrip("+-").isdigit():
            count = int(text)
            if count < 1:
                raise ConfigError(f"{option}: {text} sources: give a count >= 1 or a fraction between 0 and 1")
            return Amount(count=count)
        share = float(text)
    except ValueError:
        raise ConfigError(f"{option}: {text!r} is neither a number of sources nor a fraction") from None
    if not 0.0 < share < 1.0:
        raise ConfigError(f"{option}: the fraction {text} is not between 0 and 1 (exclusive); a count of sources is a whole number")
    return Amount(share=share)


@dataclass(frozen=True)
class Line:
    """One line of the file: its text as read and the source it is grouped by."""

    text: str
    source: str
    target: str


def read_tsv_lines(path: Path) -> list[Line]:
    """Every line of a TSV file (plain or .gz), checked as training checks it: one tab, strict UTF-8."""
    lines = []
    for (chunk,) in read_chunks([path]):
        for number, text in enumerate(chunk.decoded(), start=chunk.first):
            source, target = split_tsv_line(text, chunk.name, number)
            lines.append(Line(text, source, target))
    if not lines:
        raise DataError(f"{path}: file is empty")
    return lines


def assign(lines: Sequence[Line], valid: Amount, test: Amount, seed: int) -> dict[str, list[Line]]:
    """The lines of each split (SPLIT_FILES' names), whole sources each; `valid` and `test` count distinct sources,
    drawn at random from `seed`; the rest is train. Taking every source for valid and test is a ConfigError."""
    sources = list(dict.fromkeys(line.source for line in lines))  # first-appearance order: the draw needs no sort
    n_valid, n_test = valid.of(len(sources)), test.of(len(sources))
    if n_valid + n_test >= len(sources):
        raise ConfigError(
            f"--valid and --test take {n_valid} + {n_test} of the file's {len(sources)} distinct sources: "
            "none would be left for training"
        )
    random.Random(seed).shuffle(sources)
    split_of = {source: "val" for source in sources[:n_valid]}
    split_of.update({source: "test" for source in sources[n_valid : n_valid + n_test]})
    out: dict[str, list[Line]] = {name: [] for name in SPLIT_FILES}
    for line in lines:
        out[split_of.get(line.source, "train")].append(line)
    return out


@dataclass(frozen=True)
class Counts:
    """What a split holds: lines, distinct sources, and sources with several distinct targets."""

    lines: int
    sources: int
    several: int


def counts(lines: Sequence[Line]) -> Counts:
    targets: dict[str, set[str]] = {}
    for line in lines:
        targets.setdefault(line.source, set()).add(line.target)
    return Counts(len(lines), len(targets), sum(len(t) > 1 for t in targets.values()))


def output_paths(path: Path, out: Path | None) -> dict[str, Path]:
    """Where each split goes: `out`, by default the folder of `path`."""
    folder = path.parent if out is None else out
    return {name: folder / file for name, file in SPLIT_FILES.items()}


def check_outputs(path: Path, outputs: dict[str, Path], overwrite: bool) -> None:
    """Before reading anything: no output may be the input, nor (without `overwrite`) an existing file; the output
    folder is made when missing."""
    folder = next(iter(outputs.values())).parent
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out: {folder} is a file, expected a folder")
    for target in outputs.values():
        if target.exists() and target.resolve() == path.resolve():
            raise ConfigError(f"{path}: the input is also an output ({target.name}): name another folder with --out")
        if target.is_dir():
            raise ConfigError(f"{target}: is a directory")
        if target.exists() and not overwrite:
            raise ConfigError(f"{target} exists: add --overwrite to replace it, or write elsewhere with --out")


def split_file(
    path: Path, valid: Amount, test: Amount, seed: int, out: Path | None, overwrite: bool
) -> tuple[dict[str, Path], dict[str, Counts]]:
    """Split `path` into its output files (each written atomically) and return them with each split's counts."""
    open_corpus(path).close()  # a missing input says so first
    outputs = output_paths(path, out)
    check_outputs(path, outputs, overwrite)
    parts = assign(read_tsv_lines(path), valid, test, seed)
    next(iter(outputs.values())).parent.mkdir(parents=True, exist_ok=True)
    for name, target in outputs.items():
        atomic_write_text(target, "".join(line.text + "\n" for line in parts[name]))
    return outputs, {name: counts(lines) for name, lines in parts.items()}


def counts_table(table: dict[str, Counts]) -> list[str]:
    """The counts as aligned lines: a header, one row per split, the total."""
    total = Counts(*(sum(getattr(c, f) for c in table.values()) for f in ("lines", "sources", "several")))
    rows = [("split", "lines", "sources", "with several targets")]
    rows += [(name, str(c.lines), str(c.sources), str(c.several)) for name, c in {**table, "all": total}.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in rows
    ]
