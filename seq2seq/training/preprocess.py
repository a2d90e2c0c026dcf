"""`seq2seq preprocess`: tokenize the training corpus once, on all cores, into binary shards in the run directory."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from seq2seq.config import Config, DataConfig, dump_config
from seq2seq.data.corpus import corpus_paths, open_corpus
from seq2seq.data.shards import (
    CHUNK_SIZE, FORMAT, FORMAT_VERSION, SIDES, SPLIT, Job, ShardFiles, data_signature, default_workers, file_stamps, id_dtype,
    shard_vocabs, tokenize_corpus, vocab_hash, write_side,
)
from seq2seq.data.tokenizer import SUBWORD_LEVELS, plain_tokenizers
from seq2seq.errors import ConfigError, DataError
from seq2seq.files import atomic_write_text
from seq2seq.training import finetune
from seq2seq.runfiles import RunFiles
from seq2seq.training.rundir import config_differences, ensure_dir

log = logging.getLogger("seq2seq")


@dataclass
class PreprocessResult:
    root: Path
    n_pairs: int  # lines of the corpus
    n_examples: int  # examples kept
    src_tokens: int
    tgt_tokens: int
    seconds: float


def preprocess(
    cfg: Config, run_dir: Path, workers: Optional[int] = None, quiet: bool = False, chunk_size: int = CHUNK_SIZE
) -> PreprocessResult:
    """Tokenize and encode the training corpus into RUN_DIR/bin (building the vocabularies when missing).

    One tokenizing pass on all cores writes provisional ids (first-appearance order) and counts the
    tokens; the vocabulary is then built from the counts (or read from the run directory) and a
    vectorized pass rewrites the provisional ids as vocabulary ids. With train.init_from the vocabularies and
    tokenizers are the model's, written into RUN_DIR as `train` writes them (training/finetune), and the config is
    the one `train` runs with, so the fine-tuning run finds shards of its own ids and data settings.
    """

    started = time.monotonic()
    if not cfg.data.train:
        raise DataError("data.train: no corpus given in the config")
    files = RunFiles(Path(run_dir))
    source = None
    if cfg.train.init_from is not None:
        source = finetune.read_source(cfg.train.init_from, files)
        cfg = finetune.inherit_config(cfg, source.config, source.path or cfg.train.init_from)
    d = cfg.data
    differ = config_differences(files, cfg, sections=("data",)) if files.config.exists() else []
    if differ:
        raise ConfigError(f"{files.root} holds another run's data settings ({', '.join(differ)} differ): use another train.run_dir")
    paths = corpus_paths(d.train, d.format, d.src_lang, d.tgt_lang)
    for path in paths:
        open_corpus(path).close()  # file-not-found errors before any work
    stamps = file_stamps(cfg)
    src_tokenizer, tgt_tokenizer = plain_tokenizers(check_levels(d)) if source is None else (source.src_tokenizer, source.tgt_tokenizer)
    ensure_dir(files.root)
    out = ShardFiles(files.shards)
    out.root.mkdir(parents=True, exist_ok=True)
    out.header.unlink(missing_ok=True)  # shards without a header are never read, even if we stop half-way
    try:
        tokens = tokenize_corpus(paths, Job(src_tokenizer, d.max_len, tgt_tokenizer), workers or default_workers(), chunk_size, out, quiet)
        if source is not None:
            finetune.write_inherited(files, cfg, source)  # read back by shard_vocabs, as the build functions do
        src_vocab, tgt_vocab = shard_vocabs(cfg, files.src_vocab, files.tgt_vocab, tokens.tables)
        atomic_write_text(files.config, dump_config(cfg))
        vocabs = {"src": src_vocab, "tgt": tgt_vocab}
        n_tokens = {side: write_side(out, side, tokens.lengths[side], tokens.tables[side].remap(vocabs[side])) for side in SIDES}
    finally:
        for side in SIDES:
            out.provisional(side).unlink(missing_ok=True)
    shutil.copyfile(files.src_vocab, out.vocab("src"))
    shutil.copyfile(files.tgt_vocab, out.vocab("tgt"))
    n_examples = len(tokens.lengths["src"])
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "split": SPLIT,
        "n_examples": n_examples, "n_pairs": tokens.n_pairs,
        "dtype": {side: id_dtype(len(vocabs[side])).str for side in SIDES},
        "tokens": n_tokens,
        "vocab_sha256": {side: vocab_hash(vocabs[side]) for side in SIDES},
        "data": data_signature(cfg),
        "files": stamps,
    }
    atomic_write_text(out.header, json.dumps(header, indent=1, ensure_ascii=False) + "\n")
    seconds = time.monotonic() - started
    log.info("shards: %d examples, %d + %d tokens -> %s (%.1f s)", n_examples, n_tokens["src"], n_tokens["tgt"], out.root, seconds)
    return PreprocessResult(out.root, tokens.n_pairs, n_examples, n_tokens["src"], n_tokens["tgt"], seconds)


def check_levels(d: DataConfig) -> DataConfig:
    """`d`, whose levels need no sentencepiece model, or a ConfigError naming the key that set a subword level: its
    model is trained on the text, in `train` / `build-vocab` (a fine-tuned model's is in the checkpoint)."""
    for side, level in enumerate(d.levels):
        if level in SUBWORD_LEVELS:
            raise ConfigError(f"{d.level_key(side)}: `seq2seq preprocess` reads word, char or space levels, not {level}; train on the text instead")
    return d


# ---- reading shards -----------------------------------------------------------------------------
