"""Sentencepiece subword models (`data.level: bpe | unigram`): trained on the training data, kept in the run directory.

We use the sentencepiece library rather than our own BPE: it is fast, well kept and its decode is exact.
The model is trained on the text exactly as the Tokenizer sees it (whitespace normalized, maybe lowercased),
jointly on both sides (`data.sp_shared`, where both sides use the same subword level) or once per subword side
(`data.src_level` / `data.tgt_level` may differ), and written to RUN_DIR/sentencepiece/. The Tokenizer then
carries the model's bytes, so checkpoints hold it too and need nothing else.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from seq2seq.config import DataConfig
from seq2seq.errors import ConfigError
from seq2seq.files import atomic_write_bytes
from seq2seq.data.tokenizer import SUBWORD_LEVELS, Tokenizer, normalize, sp_escape
from seq2seq.runfiles import RunFiles

log = logging.getLogger("seq2seq")

Pair = tuple[str, str]


def train_sentencepiece(lines: Iterable[str], model_type: str, vocab_size: int) -> bytes:
    """Train a sentencepiece model on `lines` (normalized and `sp_escape`d) and return its serialized bytes.

    `vocab_size` is an upper bound (small corpora get fewer pieces). Identity normalization keeps the text as
    it is and byte fallback spells rare characters as bytes, so decode(encode(s)) == s for any s. Pad, bos and
    eos are ours (Vocab), so sentencepiece keeps only its <unk>.
    """
    import sentencepiece

    if model_type not in SUBWORD_LEVELS:
        raise ConfigError(f"data.level: {model_type!r} is not one of {', '.join(SUBWORD_LEVELS)}")
    text = [line for line in lines if line]
    if not text:
        raise ConfigError("data.train: no text to train the sentencepiece model on")
    model = io.BytesIO()
    try:
        _train(sentencepiece, text, model, model_type, vocab_size)
    except RuntimeError as e:  # e.g. fewer pieces allowed than distinct characters + 256 bytes
        reason = str(e).split("] ")[-1].strip()
        raise ConfigError(f"data.vocab_size: sentencepiece cannot train a {model_type} model of {vocab_size} pieces: {reason}") from None
    return model.getvalue()


def _train(sentencepiece: Any, text: list[str], model: io.BytesIO, model_type: str, vocab_size: int) -> None:
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_writer=model,
        model_type=model_type,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        num_threads=min(os.cpu_count() or 1, 8),
        minloglevel=2,
    )


def joint(d: DataConfig) -> bool:
    """One sentencepiece model for both sides: `data.sp_shared` where both sides use the same subword level."""
    src_level, tgt_level = d.levels
    return d.sp_shared and src_level == tgt_level and src_level in SUBWORD_LEVELS


def train_tokenizers(d: DataConfig, pairs: Sequence[Pair]) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers for `d`, the subword ones trained on `pairs` (one joint model when `joint(d)`)."""
    texts = [[sp_escape(normalize(pair[side], d.lowercase)) for pair in pairs] for side in (0, 1)]
    src_level, tgt_level = d.levels
    if joint(d):
        shared = Tokenizer(src_level, d.lowercase, train_sentencepiece(texts[0] + texts[1], src_level, d.vocab_size))
        return shared, shared
    sides = []
    for level, text in zip((src_level, tgt_level), texts):
        model = train_sentencepiece(text, level, d.vocab_size) if level in SUBWORD_LEVELS else None
        sides.append(Tokenizer(level, d.lowercase, model))
    return sides[0], sides[1]


def load_or_train(d: DataConfig, root: Path, pairs: Sequence[Pair] | None) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers, the subword side(s) read from RUN_DIR/sentencepiece/ or trained on `pairs` and
    saved there; a side of another level (`word`, `char`, `space`) needs no model.

    `pairs` may be None only when the models already exist.
    """
    levels = d.levels
    files = RunFiles(root)
    paths = files.subword_models(joint(d))
    needed = [path for path, level in zip(paths, levels) if level in SUBWORD_LEVELS]
    if not all(path.exists() for path in needed):
        if pairs is None:
            raise ConfigError(
                f"{root}: no sentencepiece model in {files.sentencepiece} for its vocabularies; train with --overwrite to rebuild both"
            )
        trained = train_tokenizers(d, pairs)
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        for path, tokenizer in dict(zip(paths, trained)).items():
            if tokenizer.sp_model is not None:
                atomic_write_bytes(path, tokenizer.sp_model)
        kinds = "/".join(sorted({level for level in levels if level in SUBWORD_LEVELS}))
        n_models = 1 if joint(d) else len(needed)
        log.info("sentencepiece %s model%s (vocab_size %d) -> %s", kinds, "" if n_models == 1 else "s", d.vocab_size, paths[0].parent)
    try:
        src, tgt = (
            Tokenizer(level, d.lowercase, path.read_bytes() if level in SUBWORD_LEVELS else None) for path, level in zip(paths, levels)
        )
    except ValueError as e:
        raise ConfigError(f"{paths[0].parent}: {e}; remove it or use --overwrite") from None
    return (src, src) if joint(d) else (src, tgt)
