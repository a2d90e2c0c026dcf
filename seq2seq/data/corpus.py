"""Corpora in, text pairs out: reading (errors name file:line) and filtering; `batch.py` turns them into ids and batches.

Every corpus and input file is read by the same few functions, in memory (`load_corpus`, `read_lines`) and
as a stream (`read_chunks` + `chunk_pairs`, which `seq2seq preprocess` runs on all cores):

- a line ends at `\\n`, and a `\\r` right before that `\\n` goes with it (CRLF files read as LF files);
- a UTF-8 byte order mark opening a file is dropped;
- nothing else splits a line: a lone `\\r`, `\\x0b`, `\\x1c`, U+0085, U+2028 ... stay inside it (in a corpus
  they are whitespace, collapsed like spaces);
- the bytes must be strict UTF-8; an error names `file:line:column` of the bad byte (the column counted in bytes).
"""

from __future__ import annotations

import gzip
import logging
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterable, Iterator, NamedTuple, Sequence

from seq2seq.data.tokenizer import normalize_whitespace
from seq2seq.errors import DataError

if TYPE_CHECKING:
    from seq2seq.config import DataConfig

log = logging.getLogger("seq2seq")

Pair = tuple[str, str]

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


def decode_lines(raw: bytes, name: str, first_line: int = 1) -> list[str]:
    """Whole lines of a file, as bytes -> their texts without the line ends: the one place for the rules above.

    `raw` is a whole file (stdin, say) or whole lines of one starting at line `first_line` (1-based), which
    numbers the lines for the one-line error.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + raw.count(b"\n", 0, e.start)
        column = e.start - raw.rfind(b"\n", 0, e.start)  # 1-based, in bytes from the line's start
        raise DataError(f"{name}:{line}:{column}: not valid UTF-8 (byte 0x{raw[e.start]:02x})") from None
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
    raw: list[bytes]

    def decoded(self) -> list[str]:
        """(len(raw),) the lines' texts."""
        return decode_lines(b"".join(self.raw), self.name, self.first)


Chunk = tuple[Lines, ...]  # the same lines of each file of a corpus: (TSV,) or (source, target)


def _raw_lines(f: IO[bytes], path: Path) -> Iterator[bytes]:
    """The lines of `f` split at b"\\n" only (binary files never split at \\r); read errors name the file."""
    try:
        yield from f
    except (OSError, EOFError) as e:  # a truncated or corrupt .gz, say
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def read_chunks(paths: Sequence[str | Path], chunk_size: int = CHUNK_LINES) -> Iterator[Chunk]:
    """Stream one file, or several aligned ones, as chunks of `chunk_size` raw lines; memory stays one chunk.

    Aligned files must have as many lines: else a DataError naming the first file, the first file whose count
    differs from it (`eval --ref A --ref B`: the wrong reference file) and their counts.
    """
    paths = [Path(p) for p in paths]
    with ExitStack() as stack:
        files = [_raw_lines(stack.enter_context(open_corpus(p)), p) for p in paths]
        first = 1
        while True:
            chunk = tuple(Lines(str(p), first, list(islice(f, chunk_size))) for p, f in zip(paths, files))
            if len({len(lines.raw) for lines in chunk}) > 1:
                n = [first - 1 + len(lines.raw) + sum(1 for _ in f) for lines, f in zip(chunk, files)]
                other = next(i for i in range(1, len(n)) if n[i] != n[0])
                raise DataError(f"misaligned corpus: {paths[0]} has {n[0]} lines but {paths[other]} has {n[other]}")
            if not chunk[0].raw:
                return
            yield chunk
            first += len(chunk[0].raw)


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
    """The files behind a corpus spec: [PREFIX.SRC, PREFIX.TGT] (each possibly .gz) or [TSV].

    A missing file where the spec looks like the other format is a DataError with a hint (`format_hint`).
    """
    if fmt == "tsv":
        paths = [Path(spec)]
    else:
        paths = []
        for lang in (src_lang, tgt_lang):
            path = Path(f"{spec}.{lang}")
            if not path.exists() and Path(f"{path}.gz").exists():
                path = Path(f"{path}.gz")
            paths.append(path)
    missing = next((path for path in paths if not path.exists()), None)
    hint = format_hint(spec, fmt, src_lang, tgt_lang) if missing is not None else None
    if hint is not None:
        raise DataError(f"{missing}: file not found; {hint}")
    return paths


def format_hint(spec: str, fmt: str, src_lang: str, tgt_lang: str) -> str | None:
    """What to set when `spec` looks like a corpus of the other format than `fmt` (None: it does not)."""
    if fmt != "tsv" and (Path(spec).is_file() or spec.endswith((".tsv", ".tsv.gz"))):
        return f"{spec} looks like a TSV file, and data.format is {fmt}: set data.format: tsv (or --set data.format=tsv)"
    if fmt == "tsv" and any(Path(f"{spec}.{lang}{gz}").exists() for lang in (src_lang, tgt_lang) for gz in ("", ".gz")):
        return (
            f"{spec}.{src_lang} / {spec}.{tgt_lang} look like parallel files, and data.format is tsv: "
            "set data.format: parallel (or --set data.format=parallel)"
        )
    return None


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


class NonEmpty(NamedTuple):
    """A corpus without its pairs with an empty side, and how many it dropped (the data report counts them)."""

    pairs: list[Pair]
    n_empty: int


def without_empty(pairs: Iterable[Pair], name: str, where: str) -> NonEmpty:
    """Drop every pair with an empty side, as a pair (a stream is never held whole), counting them; an empty corpus
    is an error."""
    kept: list[Pair] = []
    n_pairs = 0
    for pair in pairs:
        n_pairs += 1
        if has_both_sides(pair):
            kept.append(pair)
    check_nonempty(name, n_pairs, len(kept), where)
    return NonEmpty(kept, n_pairs - len(kept))


def drop_empty(pairs: Iterable[Pair], name: str, where: str) -> list[Pair]:
    """Drop every pair with an empty side, as a pair (a stream is never held whole); an empty corpus is an error."""
    return without_empty(pairs, name, where).pairs


SPLITS = ("train", "valid", "test")  # the corpora a DataConfig names


def load_corpus(data_cfg: DataConfig, split: str) -> list[Pair]:
    """The config's `split` corpus ("train", "valid" or "test"), every pair with an empty side dropped (as a pair)."""
    return load_nonempty(data_cfg, split).pairs


def load_nonempty(data_cfg: DataConfig, split: str) -> NonEmpty:
    """`load_corpus`, with the number of pairs it dropped for an empty side."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    spec = getattr(data_cfg, split)
    if not spec:
        raise DataError(f"data.{split}: no corpus given in the config")
    paths = corpus_paths(spec, data_cfg.format, data_cfg.src_lang, data_cfg.tgt_lang)
    return without_empty(iter_pairs(paths), split, corpus_name(paths))
