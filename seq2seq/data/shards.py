"""Binary shards of a tokenized training corpus, for corpora larger than memory.

`seq2seq preprocess` streams the training corpus (`data/corpus.read_chunks`), tokenizes and encodes it on all
cores (in chunks, results kept in corpus order) and writes into RUN_DIR/bin/:

    train.src.ids  train.tgt.ids   every example's token ids, end to end (uint16, or int32 for large vocabularies)
    train.src.idx  train.tgt.idx   .npy int64 offsets: example i is ids[idx[i]:idx[i + 1]]
    train.json                     header: dtype, counts, vocabulary hashes, the config's data section,
                                   size and mtime of the corpus files (written last: no header, no shards)
    src_vocab.json tgt_vocab.json  the vocabularies the ids refer to

Reading, decoding, both filters and building the vocabularies are data/corpus.py's and data/batch.py's (the functions
the text path calls), so an example holds exactly what `data/encoding.encode_pairs` makes from the raw text and training on
shards gives the very batches training on the text gives. What is here is the binary format and the
fast pass that fills it. `ShardDataset` reads examples from memory maps on demand, so memory does not
grow with the corpus. Validation data stays text: BLEU needs the raw references and validation sets are small.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
from tqdm import tqdm

from seq2seq.config import Config, DataConfig, config_to_dict
from seq2seq.data.batch import decoder_steps
from seq2seq.data.encoding import SOURCE_END, Example
from seq2seq.data.corpus import (
    Chunk, check_length_filter, check_nonempty, chunk_pairs, corpus_name, corpus_paths, count_lines, has_both_sides, read_chunks, within_max_len,
)
from seq2seq.data.vocab import save_vocabs, vocabs_from_counts
from seq2seq.errors import DataError
from seq2seq.files import atomic_write_text
from seq2seq.data.tokenizer import Tokenizer, subword_keys
from seq2seq.data.vocab import Vocab
from seq2seq.runfiles import RunFiles

log = logging.getLogger("seq2seq")

FORMAT = "seq2seq-shards"
FORMAT_VERSION = 1
SPLIT = "train"
SIDES = ("src", "tgt")
CHUNK_SIZE = 20_000  # pairs per task handed to a worker
IGNORED_DATA_KEYS = ("valid", "test")  # data keys that do not change the training ids
LEVEL_KEYS = ("level", "src_level", "tgt_level")  # compared as the two levels they set (effective_signature)
SUBWORD_KEYS = ("vocab_size", "sp_shared")  # compared only where they matter (data/tokenizer.subword_keys)


@dataclass(frozen=True)
class ShardFiles:
    """The files of one split's shards in a `bin/` directory."""

    root: Path
    split: str = SPLIT

    def ids(self, side: str) -> Path:
        return self.root / f"{self.split}.{side}.ids"

    def idx(self, side: str) -> Path:
        return self.root / f"{self.split}.{side}.idx"

    @property
    def header(self) -> Path:
        return self.root / f"{self.split}.json"

    def vocab(self, side: str) -> Path:
        return self.root / f"{side}_vocab.json"

    def provisional(self, side: str) -> Path:
        """Scratch file of preprocess: the side's tokens as provisional ids (int32), removed when it ends."""
        return self.root / f".{self.split}.{side}.provisional"


def vocab_hash(vocab: Vocab) -> str:
    return hashlib.sha256(json.dumps(vocab.to_list(), ensure_ascii=False).encode("utf-8")).hexdigest()


def id_dtype(vocab_size: int) -> np.dtype:
    """uint16 halves the shards when every id fits (65,536 types), else int32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def data_signature(cfg: Config) -> dict[str, Any]:
    """The config's data section without the keys that do not change the training ids."""
    data = dict(config_to_dict(cfg)["data"])
    for key in IGNORED_DATA_KEYS:
        data.pop(key, None)
    return data


def effective_signature(data: dict[str, Any]) -> dict[str, Any]:
    """A data signature as it decides the ids: each side's level as it takes effect (`src_level`, `tgt_level`; a
    `level: char` and a `src_level: char, tgt_level: char` are one), the sentencepiece keys only where a side is a
    subword level, the other keys as they are. Headers keep the raw signature; open_shards compares these."""
    levels = DataConfig(**{key: data[key] for key in LEVEL_KEYS if key in data}).levels
    effective = {key: value for key, value in data.items() if key not in LEVEL_KEYS + SUBWORD_KEYS}
    effective["src_level"], effective["tgt_level"] = levels
    effective.update({key: data.get(key) for key in subword_keys(levels)})
    return effective


def file_stamps(cfg: Config) -> dict[str, list[int]]:
    """Size and modification time of each training corpus file: a changed corpus makes the shards stale."""
    d = cfg.data
    stamps = {}
    for path in corpus_paths(d.train, d.format, d.src_lang, d.tgt_lang):
        try:
            st = path.stat()
        except OSError:
            raise DataError(f"{path}: file not found") from None
        stamps[str(path)] = [st.st_size, st.st_mtime_ns]
    return stamps


# ---- tokenizing on all cores --------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What a worker needs besides its chunk: the tokenizers and the length limit."""

    tokenizer: Tokenizer  # the source side's, and the target side's unless `tgt_tokenizer` is given
    max_len: Optional[int] = None
    tgt_tokenizer: Optional[Tokenizer] = None  # data.tgt_level differs from the source's

    @property
    def tokenizers(self) -> tuple[Tokenizer, Tokenizer]:
        return self.tokenizer, self.tgt_tokenizer or self.tokenizer


_JOB: Optional[Job] = None


def _init_worker(job: Job) -> None:
    global _JOB
    _JOB = job


@dataclass
class SideTokens:
    """One side of a tokenized chunk, with ids local to the chunk (the vocabulary may not exist yet)."""

    types: list[str]  # the chunk's distinct tokens; local id i is types[i]
    counts: np.ndarray  # (len(types),) int64 occurrences in all pairs with no empty side (what vocabularies count)
    ids: np.ndarray  # (N,) int32 local ids of the kept examples' tokens, end to end (no specials)
    lengths: np.ndarray  # (K,) int64 tokens of each kept example


@dataclass
class ChunkTokens:
    src: SideTokens
    tgt: SideTokens
    n_pairs: int  # lines read
    n_nonempty: int  # pairs with no empty side


def tokenize_chunk(chunk: Chunk) -> ChunkTokens:
    """Tokenize a chunk once: type counts for the vocabulary and the kept examples' tokens as local ids.

    The text path's filters, in its order: pairs with an empty side count nothing; pairs longer than
    max_len are counted (vocabularies are built before the length filter) but not kept. The length
    filter needs no vocabulary: encoding maps each token to one id.
    """
    job = _JOB
    assert job is not None
    tables: tuple[dict[str, int], dict[str, int]] = ({}, {})
    flat: tuple[list[int], list[int]] = ([], [])
    lengths: tuple[list[int], list[int]] = ([], [])
    keep: list[bool] = []
    pairs = chunk_pairs(chunk)
    tokenizers = job.tokenizers
    for pair in filter(has_both_sides, pairs):
        for side in (0, 1):
            table = tables[side]
            ids = [table.setdefault(token, len(table)) for token in tokenizers[side].tokenize(pair[side])]
            flat[side].extend(ids)
            lengths[side].append(len(ids))
        keep.append(within_max_len(lengths[0][-1], lengths[1][-1], job.max_len))
    kept = np.asarray(keep, dtype=bool)
    sides = []
    for side in (0, 1):
        ids = np.asarray(flat[side], dtype=np.int32)
        side_lengths = np.asarray(lengths[side], dtype=np.int64)
        sides.append(SideTokens(
            list(tables[side]), np.bincount(ids, minlength=len(tables[side])).astype(np.int64),
            ids[np.repeat(kept, side_lengths)], side_lengths[kept],
        ))
    return ChunkTokens(sides[0], sides[1], len(pairs), len(keep))


def ordered_map(fn: Callable[[Chunk], Any], chunks: Iterable[Chunk], job: Job, workers: int) -> Iterator[Any]:
    """fn over chunks on `workers` processes, results in input order, at most 2 x workers chunks in flight.

    (Pool.imap would read the whole corpus into its task queue: memory would grow with the corpus.)
    """
    if workers <= 1:
        _init_worker(job)
        for chunk in chunks:
            yield fn(chunk)
        return
    # fork: the workers need no re-import, and `python -m seq2seq` must not run again in them.
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with context.Pool(workers, initializer=_init_worker, initargs=(job,)) as pool:
        pending: deque[Any] = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(fn, (chunk,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---- preprocess ---------------------------------------------------------------------------------


class TypeTable:
    """Corpus-wide provisional ids for the tokens of one side, in order of first appearance, with counts."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.counts = np.zeros(1024, dtype=np.int64)

    def add(self, side: SideTokens) -> np.ndarray:
        """Merge a chunk's side; returns its tokens as provisional ids (N,) int32."""
        table = self.ids
        global_ids = np.fromiter((table.setdefault(t, len(table)) for t in side.types), dtype=np.int64, count=len(side.types))
        if len(table) > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(max(len(table), 2 * len(self.counts)) - len(self.counts), dtype=np.int64)])
        self.counts[global_ids] += side.counts
        return global_ids.astype(np.int32)[side.ids]

    def counter(self) -> Counter[str]:
        return Counter({t: int(c) for t, c in zip(self.ids, self.counts.tolist()) if c > 0})

    def remap(self, vocab: Vocab) -> np.ndarray:
        """(n_types,) the vocabulary id of each provisional id: `Vocab.encode` of the types, in provisional order."""
        return np.asarray(vocab.encode(self.ids), dtype=id_dtype(len(vocab)))


def write_ids(
    provisional: Path, lengths: np.ndarray, remap: np.ndarray, out: Path, end: Sequence[int] = (), block: int = 1 << 18
) -> None:
    """Rewrite provisional ids as vocabulary ids, `block` examples at a time, each example followed by `end`.

    provisional: int32 ids, end to end; lengths (K,) tokens of each example there; remap (n_types,).
    """
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    source = np.memmap(provisional, dtype=np.int32, mode="r") if offsets[-1] else np.zeros(0, dtype=np.int32)
    with open(out, "wb") as f:
        for a in range(0, len(lengths), block):
            b = min(a + block, len(lengths))
            ids = remap[source[offsets[a] : offsets[b]]]
            if end:
                n = lengths[a:b]
                starts = np.cumsum(n + len(end)) - (n + len(end))  # (b - a,) where each example starts in the output
                ended = np.empty(len(ids) + len(end) * (b - a), dtype=ids.dtype)
                ended[np.arange(len(ids)) + np.repeat(starts - (offsets[a:b] - offsets[a]), n)] = ids
                for j, token in enumerate(end):
                    ended[starts + n + j] = token
                ids = ended
            ids.tofile(f)
    del source


@dataclass
class Tokenized:
    """What the tokenizing pass leaves besides the provisional files: per side, the types and example lengths."""

    tables: dict[str, TypeTable]
    lengths: dict[str, np.ndarray]  # (K,) int64 tokens of each kept example, no specials
    n_pairs: int  # lines of the corpus


def tokenize_corpus(paths: Sequence[Path], job: Job, workers: int, chunk_size: int, out: ShardFiles, quiet: bool) -> Tokenized:
    """Tokenize the corpus on `workers` processes into `out.provisional(side)`, filtering as the text path does."""
    tables = {side: TypeTable() for side in SIDES}
    lengths: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
    n_pairs = n_nonempty = 0
    bar = tqdm(total=count_lines(paths[0]), desc="tokenizing", unit=" pairs", unit_scale=True, disable=quiet, dynamic_ncols=True, leave=False)
    try:
        with open(out.provisional("src"), "wb") as src_out, open(out.provisional("tgt"), "wb") as tgt_out:
            for result in ordered_map(tokenize_chunk, read_chunks(paths, chunk_size), job, workers):
                for side, f, tokens in (("src", src_out, result.src), ("tgt", tgt_out, result.tgt)):
                    tables[side].add(tokens).tofile(f)
                    lengths[side].append(tokens.lengths)
                n_pairs += result.n_pairs
                n_nonempty += result.n_nonempty
                bar.update(result.n_pairs)
    finally:
        bar.close()
    check_nonempty("train", n_pairs, n_nonempty, corpus_name(paths))
    kept = {side: np.concatenate(lengths[side]) for side in SIDES}
    check_length_filter(n_nonempty, len(kept["src"]), job.max_len)
    return Tokenized(tables, kept, n_pairs)


def shard_vocabs(cfg: Config, src_path: Path, tgt_path: Path, tables: dict[str, TypeTable]) -> tuple[Vocab, Vocab]:
    """The run directory's vocabularies, or (saved there) what `data.build_vocabs` makes of the same pairs."""
    if src_path.exists() and tgt_path.exists():
        src_vocab, tgt_vocab = Vocab.load(src_path), Vocab.load(tgt_path)
        log.info("vocabulary: %d source, %d target types from %s", len(src_vocab), len(tgt_vocab), src_path.parent)
        return src_vocab, tgt_vocab
    d = cfg.data
    src_vocab, tgt_vocab = vocabs_from_counts(tables["src"].counter(), tables["tgt"].counter(), d.min_freq, d.max_size, d.shared_vocab)
    save_vocabs(src_vocab, tgt_vocab, src_path, tgt_path)
    return src_vocab, tgt_vocab


def write_side(out: ShardFiles, side: str, lengths: np.ndarray, remap: np.ndarray) -> int:
    """Write one side's ids and index from its provisional file; returns the tokens written."""
    end = SOURCE_END if side == "src" else ()  # the ids `data/encoding.encode_pairs` makes: sources end in <eos>
    write_ids(out.provisional(side), lengths, remap, out.ids(side), end)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths + len(end), out=offsets[1:])
    with open(out.idx(side), "wb") as f:
        np.save(f, offsets)
    return int(offsets[-1])



class ShardDataset:
    """Examples read on demand from memory-mapped shards: `dataset[i]` is (source ids, target ids).

    Memory holds the offsets (8 bytes per example and side) and whatever pages the OS caches, never
    the corpus. Indexing returns the same lists `data/encoding.encode_pairs` returns, so `collate` is unchanged.
    """

    def __init__(self, files: ShardFiles, header: dict[str, Any]):
        self.files = files
        self.n = int(header["n_examples"])
        self.ids: dict[str, np.ndarray] = {}
        self.offsets: dict[str, np.ndarray] = {}
        for side in ("src", "tgt"):
            dtype = np.dtype(header["dtype"][side])
            n_tokens = int(header["tokens"][side])
            path = files.ids(side)
            if not path.exists() or path.stat().st_size != n_tokens * dtype.itemsize:
                raise DataError(f"{path}: missing or truncated shard; run `seq2seq preprocess` again")
            # numpy cannot map an empty file (not made by preprocess, which drops empty sides: a guard only)
            self.ids[side] = np.memmap(path, dtype=dtype, mode="r") if n_tokens else np.zeros(0, dtype=dtype)
            try:
                offsets = np.load(files.idx(side), mmap_mode="r")
            except (OSError, ValueError) as e:
                raise DataError(f"{files.idx(side)}: unreadable shard index ({e}); run `seq2seq preprocess` again") from None
            if offsets.shape != (self.n + 1,) or int(offsets[-1]) != n_tokens:
                raise DataError(f"{files.idx(side)}: shard index does not match {files.header}; run `seq2seq preprocess` again")
            self.offsets[side] = offsets

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Example:
        if not 0 <= i < self.n:
            raise IndexError(i)
        src_o, tgt_o = self.offsets["src"], self.offsets["tgt"]
        return (
            self.ids["src"][src_o[i] : src_o[i + 1]].tolist(),
            self.ids["tgt"][tgt_o[i] : tgt_o[i + 1]].tolist(),
        )

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(N,) (N,) padded lengths as `data.example_lengths` gives them: source incl. <eos>, target incl. <bos>/<eos>."""
        return np.diff(self.offsets["src"]), decoder_steps(np.diff(self.offsets["tgt"]))


@dataclass
class Shards:
    """A run directory's checked training shards."""

    files: ShardFiles
    header: dict[str, Any]

    def check_vocabs(self, src_vocab: Vocab, tgt_vocab: Vocab) -> None:
        """Refuse shards whose ids refer to other vocabularies than the run's."""
        for side, vocab in (("src", src_vocab), ("tgt", tgt_vocab)):
            if self.header["vocab_sha256"][side] != vocab_hash(vocab):
                raise DataError(
                    f"{self.files.header}: the shards were encoded with another {side} vocabulary than the run's; "
                    f"run `seq2seq preprocess` again (or delete {self.files.root})"
                )

    def restore_vocabs(self, src_path: Path, tgt_path: Path) -> None:
        """Put the shards' vocabularies into the run directory when it has none (after --overwrite, say)."""
        if src_path.exists() and tgt_path.exists():
            return
        for side, path in (("src", src_path), ("tgt", tgt_path)):
            atomic_write_text(path, self.files.vocab(side).read_text(encoding="utf-8"))

    def dataset(self) -> ShardDataset:
        return ShardDataset(self.files, self.header)


def open_shards(run_dir: Path, cfg: Config) -> Optional[Shards]:
    """The run directory's training shards, checked against `cfg` and the corpus files; None when there are none.

    Stale shards (made with another data section, or before the corpus changed) raise DataError: training
    on them would silently train on other data.
    """
    files = ShardFiles(RunFiles(Path(run_dir)).shards)
    if not files.header.exists():
        return None
    redo = f"run `seq2seq preprocess` again with this config (or delete {files.root})"
    try:
        header = json.loads(files.header.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{files.header}: unreadable shard header ({e}); {redo}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DataError(f"{files.header}: not a seq2seq shard header; {redo}")
    if header.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{files.header}: shard format version {header.get('format_version')!r}, this seq2seq reads {FORMAT_VERSION}; {redo}")
    theirs = header.get("data")
    if not isinstance(theirs, dict):
        raise DataError(f"{files.header}: not a seq2seq shard header; {redo}")
    ours, theirs = effective_signature(data_signature(cfg)), effective_signature(theirs)
    changed = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if changed:
        what = ", ".join(f"data.{k}={theirs.get(k)!r} (config: {ours.get(k)!r})" for k in changed)
        raise DataError(f"{files.header}: stale shards, made with {what}; {redo}")
    stamps = file_stamps(cfg)
    if stamps != header.get("files"):
        raise DataError(f"{files.header}: stale shards, the corpus files changed since they were made; {redo}")
    return Shards(files, header)
