"""Where two pronunciation systems' word errors lie (issue 35): the word error of each hypothesis file against a test
TSV, several pronunciations per word counted right, by word length and by references per word, and again after
folding the transcription conventions that spelling barely decides (WikiPron German writes an affricate with or
without a tie bar, a syllabic consonant or schwa plus consonant, a glottal stop before a vowel or none: `t͡s` / `t s`,
`n̩` / `ə n`, `ʔ a` / `a`). Folding both the hypothesis and the references shows how much of the error is those
conventions and how much is the pronunciation itself. Also the oracle: words that neither system writes right.

Usage:
  python scripts/g2p_errors.py --test data/wikipron/de/test.tsv --hyp ours=runs/compare_g2p/ours-8min-seed1/test.beam5.hyp \
      --hyp phonetisaurus=runs/compare_g2p/phonetisaurus/test.hyp
Each hypothesis file has one line per distinct test word, in the test file's order (as `seq2seq eval --output`
and scripts/compare_g2p.py write them). Standard library only.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

# The folds: a tie bar dropped, a syllabic consonant written as schwa + consonant, a glottal stop dropped.
FOLDS = ((re.compile("\u0361"), " "), (re.compile(r"(\S)\u0329"), r"ə \1"), (re.compile(r"(^| )ʔ( |$)"), " "))
LENGTHS = ((0, 7), (8, 11), (12, 15), (16, 999))


def fold(pronunciation: str) -> str:
    for pattern, into in FOLDS:
        pronunciation = pattern.sub(into, pronunciation)
    return " ".join(pronunciation.split())


def read_items(test: Path) -> dict[str, list[str]]:
    """Each distinct source of the test TSV (in order of first appearance) -> its pronunciations."""
    items: dict[str, list[str]] = {}
    for line in test.read_text(encoding="utf-8").splitlines():
        if line.strip():
            src, _, tgt = line.partition("\t")
            items.setdefault(src, []).append(" ".join(tgt.split()))
    return items


def word_error(rows: list[tuple[str, list[str], str]], folded: bool = False) -> str:
    """The share of `rows` (source, references, hypothesis) whose hypothesis is none of the references, in %."""
    wrong = sum((fold(h) not in {fold(r) for r in refs}) if folded else (h not in refs) for _, refs, h in rows)
    return f"{100.0 * wrong / len(rows):.2f}" if rows else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--hyp", action="append", required=True, metavar="NAME=FILE", help="a system's output (repeat)")
    args = parser.parse_args()
    items = read_items(args.test)
    systems = {}
    for spec in args.hyp:
        name, _, path = spec.partition("=")
        lines = Path(path).read_text(encoding="utf-8").split("\n")[: len(items)]
        if len(lines) < len(items):
            parser.error(f"{path}: {len(lines)} lines for {len(items)} test words")
        systems[name] = [(src, refs, " ".join(h.split())) for (src, refs), h in zip(items.items(), lines)]
    groups = [("all words", lambda s, r: True), ("one pronunciation", lambda s, r: len(r) == 1),
              ("several pronunciations", lambda s, r: len(r) > 1)]
    groups += [(f"{lo}-{hi} letters" if hi < 999 else f"{lo}+ letters", lambda s, r, lo=lo, hi=hi: lo <= len(s) <= hi) for lo, hi in LENGTHS]
    names = list(systems)
    print("| words | n | " + " | ".join(f"{n} word error | {n} folded" for n in names) + " |")
    print("|---|---|" + "---|---|" * len(names))
    for label, keep in groups:
        rows = {n: [row for row in systems[n] if keep(row[0], row[1])] for n in names}
        cells = " | ".join(f"{word_error(rows[n])} | {word_error(rows[n], True)}" for n in names)
        print(f"| {label} | {len(rows[names[0]]):,} | {cells} |")
    if len(names) > 1:
        neither = sum(all(systems[n][i][2] not in systems[n][i][1] for n in names) for i in range(len(items)))
        print(f"\nneither system right (the oracle's word error): {100.0 * neither / len(items):.2f}")


if __name__ == "__main__":
    main()
