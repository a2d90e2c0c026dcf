"""Corpora in, batches out: reading (errors name file:line), filtering, encoding, collate -> Batch, bucketed batches.

Every corpus and input file is read by the same few functions, in memory (`load_corpus`, `read_lines`) and
as a stream (`read_chunks` + `chunk_pairs`, which `seq2seq preprocess` runs on all cores):

- a line ends at `\\n`, and a `\\r` right before that `\\n` goes with it (CRLF files read as LF files);
- a UTF-8 byte order mark opening a file is dropped;
- nothing else splits a line: a lone `\\r`, `\\x0b`, `\\x1c`, U+0085, U+2028 ... stay inside it (in a corpus
  they are whitespace, collapsed like spaces);
- the bytes must be strict UTF-8; an error names `file:line` and the byte's offset in the file.

The shift between decoder input and labels happens in `collate` and nowhere else:
    tgt_in  = <bos> y1 .. yn
    tgt_out = y1 .. yn <eos>
"""

from __future__ import annotations

import gzip
import logging
import random
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Iterable, Iterator, NamedTuple, Sequence, TypeVar

import numpy as np
import torch

from seq2seq.errors import DataError
from seq2seq.tokenizer import Tokenizer, normalize_whitespace
from seq2seq.vocab import BOS, EOS, PAD, Vocab

log = logging.getLogger("seq2seq")

Pair = tuple[str, str]
Example = tuple[list[int], list[int]]  # (source ids ending in SOURCE_END, target ids without specials)

BOM = "\ufeff"
CHUNK_LINES = 20_000  # lines a chunk of `read_chunks` holds by default


# ---- reading: the one set of rules for every corpus and input file -------------------------------------


def open_corpus(path: str | Path) -> IO[bytes]:
    """A text file (plain, or gzip when it ends in .gz) opened for reading bytes; a missing file is a DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a text file")
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def decode_lines(raw: bytes, name: str, first_line: int = 1, offset: int = 0) -> list[str]:
    """Whole lines of a file, as bytes -> their texts without the line ends: the one place for the rules above.

    `raw` is a whole file (stdin, say) or lines of one starting at line `first_line` (1-based) and byte
    `offset`; they number the lines and place the bad byte in the file for the one-line error.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + raw.count(b"\n", 0, e.start)
        raise DataError(f"{name}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {offset + e.start})") from None
    if first_line == 1:
        text = text.removeprefix(BOM)
    # Split on "\n" only: str.splitlines() also splits on \r, \x1c, \u2028 ... and would misalign corpora.
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1] == "":  # the last line's "\n" (or an empty input)
        lines.pop()
    return lines


@dataclass(frozen=True)
class Lines:
    """Consecutive raw lines of one file (each with its `\\n`, the file's last maybe without)."""

    name: str  # the file, for errors
    first: int  # 1-based number of the first line
    offset: int  # byte offset of the first line in the file
    raw: list[bytes]

    def decoded(self) -> list[str]:
        """(len(raw),) the lines' texts."""
        return decode_lines(b"".join(self.raw), self.name, self.first, self.offset)


Chunk = tuple[Lines, ...]  # the same lines of each file of a corpus: (TSV,) or (source, target)


def _raw_lines(f: IO[bytes], path: Path) -> Iterator[bytes]:
    """The lines of `f` split at b"\\n" only (binary files never split at \\r); read errors name the file."""
    try:
        yield from f
    except (OSError, EOFError) as e:  # a truncated or corrupt .gz, say
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def read_chunks(paths: Sequence[str | Path], chunk_size: int = CHUNK_LINES) -> Iterator[Chunk]:
    """Stream one file, or several aligned ones, as chunks of `chunk_size` raw lines; memory stays one chunk.

    Aligned files must have as many lines: else a DataError naming the first two files and their counts.
    """
    paths = [Path(p) for p in paths]
    with ExitStack() as stack:
        files = [_raw_lines(stack.enter_context(open_corpus(p)), p) for p in paths]
        first, offsets = 1, [0] * len(paths)
        while True:
            chunk = tuple(Lines(str(p), first, o, list(islice(f, chunk_size))) for p, f, o in zip(paths, files, offsets))
            if len({len(lines.raw) for lines in chunk}) > 1:
                n = [first - 1 + len(lines.raw) + sum(1 for _ in f) for lines, f in zip(chunk, files)]
                raise DataError(f"misaligned corpus: {paths[0]} has {n[0]} lines but {paths[1]} has {n[1]}")
            if not chunk[0].raw:
                return
            yield chunk
            first += len(chunk[0].raw)
            offsets = [o + sum(map(len, lines.raw)) for o, lines in zip(offsets, chunk)]


def count_lines(path: Path) -> int | None:
    """Lines of a plain text file, counted fast in binary (None for .gz: that would mean a full decompression)."""
    if path.suffix == ".gz":
        return None
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def split_tsv_line(line: str, path: str | Path, line_number: int) -> Pair:
    """`source<TAB>target` -> a whitespace-normalized pair; anything but exactly one tab is an error."""
    if line.count("\t") != 1:
        found = "no tab" if "\t" not in line else f"{line.count(chr(9))} tabs"
        raise DataError(f"{path}:{line_number}: expected source<TAB>target, found {found}")
    src, tgt = line.split("\t")
    return normalize_whitespace(src), normalize_whitespace(tgt)


def chunk_pairs(chunk: Chunk) -> list[Pair]:
    """A chunk's whitespace-normalized (source, target) pairs, empties included."""
    if len(chunk) == 1:
        (lines,) = chunk
        return [split_tsv_line(text, lines.name, n) for n, text in enumerate(lines.decoded(), start=lines.first)]
    src, tgt = chunk
    return [(normalize_whitespace(s), normalize_whitespace(t)) for s, t in zip(src.decoded(), tgt.decoded())]


def iter_pairs(paths: Sequence[str | Path], chunk_size: int = CHUNK_LINES) -> Iterator[Pair]:
    """A corpus ([TSV] or [source, target]) as a stream of whitespace-normalized pairs, empties included."""
    for chunk in read_chunks(paths, chunk_size):
        yield from chunk_pairs(chunk)


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file (plain or .gz), without their line ends."""
    return [text for (lines,) in read_chunks([path]) for text in lines.decoded()]


def read_parallel_files(src_path: Path, tgt_path: Path) -> list[Pair]:
    """Aligned source / target files -> whitespace-normalized pairs, empties included."""
    return list(iter_pairs([src_path, tgt_path]))


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


def corpus_name(paths: Sequence[str | Path]) -> str:
    """How errors name a corpus: `a.en + a.de`."""
    return " + ".join(map(str, paths))


def read_pairs(spec: str, fmt: str, src_lang: str, tgt_lang: str) -> list[Pair]:
    """Read a parallel corpus as (source, target) pairs, whitespace-normalized, empties included."""
    return list(iter_pairs(corpus_paths(spec, fmt, src_lang, tgt_lang)))


# ---- filtering: the same two filters in memory and in `seq2seq preprocess` ---------------------------------


def has_both_sides(pair: Pair) -> bool:
    """A pair with an empty side is dropped as a pair, never one side only (that would misalign the rest)."""
    return bool(pair[0] and pair[1])


def check_nonempty(name: str, n_pairs: int, n_kept: int, where: str) -> None:
    """Log how many of `n_pairs` pairs had an empty side; none left is an error naming the corpus `where`."""
    if n_kept < n_pairs:
        log.info("%s: dropped %d of %d pairs with an empty side", name, n_pairs - n_kept, n_pairs)
    if not n_kept:
        raise DataError(f"{where}: corpus is empty")


def within_max_len(src_len: int, tgt_len: int, max_len: int | None) -> bool:
    """The training length filter: both sides at most `max_len` tokens (specials not counted); None keeps all."""
    return max_len is None or (src_len <= max_len and tgt_len <= max_len)


def check_length_filter(n_pairs: int, n_kept: int, max_len: int | None) -> None:
    """Log what the length filter dropped; dropping every pair is an error."""
    if max_len is None or n_kept == n_pairs:
        return
    log.info("length filter: dropped %d of %d training pairs longer than %d tokens", n_pairs - n_kept, n_pairs, max_len)
    if not n_kept:
        raise DataError(f"data.max_len: every training pair is longer than {max_len} tokens")


def drop_empty(pairs: Iterable[Pair], name: str, where: str) -> list[Pair]:
    """Drop every pair with an empty side, as a pair (a stream is never held whole); an empty corpus is an error."""
    kept: list[Pair] = []
    n_pairs = 0
    for pair in pairs:
        n_pairs += 1
        if has_both_sides(pair):
            kept.append(pair)
    check_nonempty(name, n_pairs, len(kept), where)
    return kept


def load_corpus(spec: str, fmt: str, src_lang: str, tgt_lang: str, name: str) -> list[Pair]:
    """Read a corpus and drop every pair with an empty side (as a pair, never one side only)."""
    if not spec:
        raise DataError(f"data.{name}: no corpus given in the config")
    paths = corpus_paths(spec, fmt, src_lang, tgt_lang)
    return drop_empty(iter_pairs(paths), name, corpus_name(paths))


# ---- encoding ---------------------------------------------------------------------------------------------

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


def encode_pairs(pairs: Sequence[Pair], src: Encoder, tgt: Encoder, max_len: int | None = None) -> list[Example]:
    """Encode pairs; with `max_len` (training only) drop pairs whose either side has more tokens."""
    examples = []
    for s, t in pairs:
        s_ids, t_ids = src.ids(s), tgt.ids(t)
        if within_max_len(len(s_ids), len(t_ids), max_len):
            examples.append((with_source_end(s_ids), t_ids))
    check_length_filter(len(pairs), len(examples), max_len)
    return examples


# ---- batches ----------------------------------------------------------------------------------------------


class Batch(NamedTuple):
    """A padded batch on the CPU. Pad id is PAD everywhere; lengths count real tokens."""

    src: torch.Tensor  # (B, S) source ids, each row ending in <eos>
    src_lengths: torch.Tensor  # (B,)
    tgt_in: torch.Tensor  # (B, T) <bos> y1 .. yn
    tgt_out: torch.Tensor  # (B, T) y1 .. yn <eos>
    tgt_lengths: torch.Tensor  # (B,) decoder_steps(n) = n + 1

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


Steps = TypeVar("Steps", int, np.ndarray, torch.Tensor)


def decoder_steps(tgt_lengths: Steps) -> Steps:
    """Decoder steps for targets of `tgt_lengths` tokens (no specials): one more, as `collate` shifts them.

    The decoder reads `<bos> y1 .. yn` and predicts `y1 .. yn <eos>`: n + 1 steps, which is also the padded
    target length. An int, or lengths (N,) as a numpy array or tensor, alike.
    """
    return tgt_lengths + 1


def collate(examples: Sequence[Example]) -> Batch:
    """Pad a list of examples into a Batch; the one place where targets are shifted (see `decoder_steps`).

    Returns src (B, S), src_lengths (B,), tgt_in / tgt_out (B, T) and tgt_lengths (B,), T = max decoder steps.
    """
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
    """Padded lengths as collate will make them: source incl. <eos>, target the decoder steps (incl. <bos>/<eos>)."""
    return [len(s) for s, _ in examples], [decoder_steps(len(t)) for _, t in examples]


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
