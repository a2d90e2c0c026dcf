"""Generate a large synthetic parallel corpus for scale benchmarks (never commit its output).

Source sentences are random word sequences with Zipf-distributed words (exponent ~1.1, as in natural
text) over a made-up lexicon of pronounceable words; lengths are 3..40 words (mean ~14). The target is a
deterministic "translation": every word is mapped through a fixed bijection onto a second lexicon and
each pair of neighbouring words is swapped, so a model has something to learn. A quarter of the
sentences end in " ." / " !" / " ?" or carry a comma, so the tokenizer's joiners are exercised.

Usage: python scripts/make_synthetic_corpus.py --out /tmp/synth --pairs 5000000
writes OUT/train.src, OUT/train.tgt (PAIRS lines) and OUT/valid.src, OUT/valid.tgt (--valid lines).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

ONSETS = ["", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "kl", "sch"]
VOWELS = ["a", "e", "i", "o", "u", "ei", "au", "ie"]
CODAS = ["", "n", "r", "s", "t", "l", "m", "ck", "nd"]


def lexicon(size: int, rng: np.random.Generator) -> list[str]:
    """`size` distinct pronounceable words of 1..4 syllables."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        n = int(rng.integers(1, 5))
        word = "".join(ONSETS[rng.integers(len(ONSETS))] + VOWELS[rng.integers(len(VOWELS))] + CODAS[rng.integers(len(CODAS))] for _ in range(n))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def write_split(out: Path, name: str, n: int, src_words: np.ndarray, tgt_words: np.ndarray, mapping: np.ndarray,
                probs: np.ndarray, rng: np.random.Generator, block: int = 100_000) -> None:
    with open(out / f"{name}.src", "w", encoding="utf-8") as src_f, open(out / f"{name}.tgt", "w", encoding="utf-8") as tgt_f:
        bar = tqdm(total=n, desc=name, unit=" pairs", unit_scale=True)
        for start in range(0, n, block):
            m = min(block, n - start)
            lengths = np.clip(rng.poisson(13, size=m), 3, 40)
            ids = rng.choice(len(probs), size=int(lengths.sum()), p=probs)
            ends = rng.integers(0, 8, size=m)  # 0: ".", 1: "!", 2: "?" , 3: a comma after word 1
            src_lines, tgt_lines = [], []
            pos = 0
            for length, end in zip(lengths.tolist(), ends.tolist()):
                sent = ids[pos : pos + length]
                pos += length
                tgt_ids = mapping[sent]
                swapped = tgt_ids.copy()
                swapped[: length - length % 2 : 2], swapped[1 : length - length % 2 : 2] = tgt_ids[1 : length - length % 2 : 2], tgt_ids[: length - length % 2 : 2]
                s, t = src_words[sent].tolist(), tgt_words[swapped].tolist()
                if end == 3:
                    s[0] += ","
                    t[0] += ","
                s_text, t_text = " ".join(s), " ".join(t)
                if end < 3:
                    mark = ".!?"[end]
                    s_text, t_text = f"{s_text} {mark}", f"{t_text} {mark}"
                src_lines.append(s_text)
                tgt_lines.append(t_text)
            src_f.write("\n".join(src_lines) + "\n")
            tgt_f.write("\n".join(tgt_lines) + "\n")
            bar.update(m)
        bar.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/synth"))
    ap.add_argument("--pairs", type=int, default=5_000_000)
    ap.add_argument("--valid", type=int, default=200)
    ap.add_argument("--vocab", type=int, default=30_000, help="words per language")
    ap.add_argument("--zipf", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    src_words = np.array(lexicon(args.vocab, rng), dtype=object)
    tgt_words = np.array(lexicon(args.vocab, rng), dtype=object)
    mapping = rng.permutation(args.vocab)
    probs = 1.0 / np.arange(1, args.vocab + 1) ** args.zipf
    probs /= probs.sum()
    args.out.mkdir(parents=True, exist_ok=True)
    write_split(args.out, "valid", args.valid, src_words, tgt_words, mapping, probs, rng)
    write_split(args.out, "train", args.pairs, src_words, tgt_words, mapping, probs, rng)


if __name__ == "__main__":
    main()
