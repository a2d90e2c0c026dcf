"""Corpora in, batches out: reading (errors name file:line), encoding, collate -> Batch, bucketed batches.

The shift between decoder input and labels happens in `collate` and nowhere else:
    tgt_in  = <bos> y1 .. yn
    tgt_out = y1 .. yn <eos>
"""

from __future__ import annotations

import gzip
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from seq2seq.errors import DataError
from seq2seq.tokenizer import Tokenizer, normalize_whitespace
from seq2seq.vocab import BOS, EOS, PAD, Vocab

log = logging.getLogger("seq2seq")

Pair = tuple[str, str]
Example = tuple[list[int], list[int]]  # (source ids ending in <eos>, target ids without specials)


def decode_lines(raw: bytes, name: str) -> list[str]:
    """Strict UTF-8 bytes -> lines without their line ends; errors name `name:line`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{name}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    # Split on "\n" only: str.splitlines() also splits on \x1c, \u2028 ... and would misalign corpora.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file (plain or .gz), without their line ends. Strict UTF-8."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a text file")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    return decode_lines(raw, str(path))


def read_parallel_files(src_path: Path, tgt_path: Path) -> list[Pair]:
    """Aligned source / target files -> whitespace-normalized pairs, empties included."""
    src_lines, tgt_lines = read_lines(src_path), read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise DataError(f"misaligned corpus: {src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}")
    return [(normalize_whitespace(s), normalize_whitespace(t)) for s, t in zip(src_lines, tgt_lines)]


def corpus_paths(spec: str, fmt: str, src_lang: str, tgt_lang: str) -> list[Path]:
    """The files behind a corpus spec: [PREFIX.SRC, PREFIX.TGT] (each possibly .gz) or [TSV]."""
    if fmt == "tsv":
        return [Path(spec)]
    paths = []
    for lang in (src_lang, tgt_lang):
        path = Path(f"{spec}.{lang}")
        if not path.exists() and Path(f"{path}.gz").exists():
            path = Path(f"{path}.gz")
        paths.append(path)
    return paths


def split_tsv_line(line: str, path: str | Path, line_number: int) -> Pair:
    """`source<TAB>target` -> a whitespace-normalized pair; anything but exactly one tab is an error."""
    if line.count("\t") != 1:
        found = "no tab" if "\t" not in line else f"{line.count(chr(9))} tabs"
        raise DataError(f"{path}:{line_number}: expected source<TAB>target, found {found}")
    src, tgt = line.split("\t")
    return normalize_whitespace(src), normalize_whitespace(tgt)


def read_pairs(spec: str, fmt: str, src_lang: str, tgt_lang: str) -> list[Pair]:
    """Read a parallel corpus as (source, target) pairs, whitespace-normalized, empties included."""
    paths = corpus_paths(spec, fmt, src_lang, tgt_lang)
    if fmt == "tsv":
        return [split_tsv_line(line, paths[0], i) for i, line in enumerate(read_lines(paths[0]), start=1)]
    return read_parallel_files(paths[0], paths[1])


def load_corpus(spec: str, fmt: str, src_lang: str, tgt_lang: str, name: str) -> list[Pair]:
    """Read a corpus and drop every pair with an empty side (as a pair, never one side only)."""
    if not spec:
        raise DataError(f"data.{name}: no corpus given in the config")
    return drop_empty(read_pairs(spec, fmt, src_lang, tgt_lang), name, " + ".join(map(str, corpus_paths(spec, fmt, src_lang, tgt_lang))))


def drop_empty(pairs: list[Pair], name: str, where: str) -> list[Pair]:
    """Drop every pair with an empty side, as a pair; an empty corpus is an error."""
    kept = [(s, t) for s, t in pairs if s and t]
    if len(kept) < len(pairs):
        log.info("%s: dropped %d of %d pairs with an empty side", name, len(pairs) - len(kept), len(pairs))
    if not kept:
        raise DataError(f"{where}: corpus is empty")
    return kept


@dataclass(frozen=True)
class Encoder:
    """Text -> ids for one side (tokenizer + vocabulary)."""

    tokenizer: Tokenizer
    vocab: Vocab

    def ids(self, text: str) -> list[int]:
        return self.vocab.encode(self.tokenizer.tokenize(text))


def encode_pairs(pairs: Sequence[Pair], src: Encoder, tgt: Encoder, max_len: int | None = None) -> list[Example]:
    """Encode pairs; with `max_len` (training only) drop pairs whose either side has more tokens."""
    examples = []
    for s, t in pairs:
        s_ids, t_ids = src.ids(s), tgt.ids(t)
        if max_len is not None and (len(s_ids) > max_len or len(t_ids) > max_len):
            continue
        examples.append((s_ids + [EOS], t_ids))
    if max_len is not None and len(examples) < len(pairs):
        log.info("length filter: dropped %d of %d training pairs longer than %d tokens", len(pairs) - len(examples), len(pairs), max_len)
    return examples


class Batch(NamedTuple):
    """A padded batch on the CPU. Pad id is PAD everywhere; lengths count real tokens."""

    src: torch.Tensor  # (B, S) source ids, each row ending in <eos>
    src_lengths: torch.Tensor  # (B,)
    tgt_in: torch.Tensor  # (B, T) <bos> y1 .. yn
    tgt_out: torch.Tensor  # (B, T) y1 .. yn <eos>
    tgt_lengths: torch.Tensor  # (B,) n + 1

    def to(self, device: torch.device) -> "Batch":
        non_blocking = device.type == "cuda"
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self))

    def pin_memory(self) -> "Batch":
        return Batch(*(t.pin_memory() for t in self))


def pad(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id sequences with PAD. Returns ids (B, L) and lengths (B,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths


def collate(examples: Sequence[Example]) -> Batch:
    """Pad a list of examples into a Batch; the one place where targets are shifted."""
    src, src_lengths = pad([s for s, _ in examples])
    tgt_in, tgt_lengths = pad([[BOS] + t for _, t in examples])
    tgt_out, _ = pad([t + [EOS] for _, t in examples])
    return Batch(src, src_lengths, tgt_in, tgt_out, tgt_lengths)


class BucketSampler:
    """Length-bucketed batches of example indices, shuffled, deterministic for (seed, epoch).

    Examples are sorted by (target, source) length with random tie-breaking, cut into batches of
    `batch_size` sentences or, with `max_tokens`, of at most `max_tokens` padded tokens
    (sentences x the longer side's padded length); the batch order is then shuffled.

    With `world_size` > 1 (one sampler per rank under torchrun) every rank builds the same global list,
    cuts it to a multiple of `world_size` and takes batches `rank, rank + world_size, ...`: step k of
    the job consumes global batches k * world_size .. k * world_size + world_size - 1, one per rank.
    """

    def __init__(
        self,
        src_lengths: Sequence[int],
        tgt_lengths: Sequence[int],
        batch_size: int,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        # numpy arrays: 8 bytes an example, where lists of Python ints and sort keys took ~150 (5M pairs: 0.8 GB)
        self.src_lengths = np.asarray(src_lengths, dtype=np.int64)
        self.tgt_lengths = np.asarray(tgt_lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def batches(self, epoch: int = 0) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + epoch)
        n = len(self.src_lengths)
        if n == 0:
            return []
        noise = np.fromiter((rng.random() for _ in range(n)), dtype=np.float64, count=n) if self.shuffle else np.arange(n)
        order = np.lexsort((noise, self.src_lengths, self.tgt_lengths))  # by target length, then source length, then noise
        if self.max_tokens is None:
            starts = list(range(0, n, self.batch_size))
        else:  # greedy: close a batch when one more sentence would pad it past max_tokens
            starts, count, longest = [0], 0, 0
            for j, size in enumerate(np.maximum(self.src_lengths, self.tgt_lengths)[order].tolist()):
                if count and (count + 1) * max(longest, size) > self.max_tokens:
                    starts.append(j)
                    count, longest = 0, 0
                count += 1
                longest = max(longest, size)
        batches: list[list[int]] = [part.tolist() for part in np.split(order, starts[1:])]
        if self.shuffle:
            rng.shuffle(batches)
        if self.world_size > 1:
            if len(batches) < self.world_size:
                raise DataError(f"the training data makes {len(batches)} batches, fewer than the {self.world_size} processes: use a smaller batch size")
            usable = len(batches) - len(batches) % self.world_size
            batches = batches[self.rank : usable : self.world_size]
        return batches


def example_lengths(examples: Sequence[Example]) -> tuple[list[int], list[int]]:
    """Padded lengths as collate will make them: source incl. <eos>, target incl. <bos>/<eos>."""
    return [len(s) for s, _ in examples], [len(t) + 1 for _, t in examples]


def build_vocabs(
    pairs: Sequence[Pair], tokenizer: Tokenizer, min_freq: int, max_size: int | None, shared: bool, progress: bool = False,
    tgt_tokenizer: Tokenizer | None = None,
) -> tuple[Vocab, Vocab]:
    """Source and target vocabularies from training pairs (one joint vocabulary when `shared`).

    `tgt_tokenizer` (None: `tokenizer`) tokenizes the target side, for per-side subword models.
    """
    import sys
    from collections import Counter

    from tqdm import tqdm

    src_counts: Counter[str] = Counter()
    tgt_counts: Counter[str] = Counter()
    bar = tqdm(pairs, desc="vocabulary", unit=" pairs", disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True)
    for s, t in bar:
        src_counts.update(tokenizer.tokenize(s))
        tgt_counts.update((tgt_tokenizer or tokenizer).tokenize(t))
    if shared:
        joint = Vocab.build(src_counts + tgt_counts, min_freq, max_size)
        return joint, joint
    return Vocab.build(src_counts, min_freq, max_size), Vocab.build(tgt_counts, min_freq, max_size)
