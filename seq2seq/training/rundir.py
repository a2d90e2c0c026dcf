"""A run directory: the checks before a run writes into it, and what is built there before training (the config,
the tokenizers and the vocabularies). Its files are named by `seq2seq.runfiles.RunFiles`."""

from __future__ import annotations

import shutil
from pathlib import Path

from seq2seq.files import atomic_write_text, remove_stale_temp_files
from seq2seq.config import Config, config_from_dict, config_to_dict, dump_config, read_yaml
from seq2seq.data.vocab import build_vocabs, save_vocabs
from seq2seq.data.corpus import load_corpus
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.data.tokenizer import SUBWORD_LEVELS, Tokenizer, plain_tokenizers
from seq2seq.data.vocab import Vocab
from seq2seq.runfiles import RunFiles


def default_run_dir(cfg: Config, config_path: str | Path | None) -> Path:
    if cfg.train.run_dir:
        return Path(cfg.train.run_dir)
    return Path("runs") / (Path(config_path).stem if config_path else "default")


def load_or_build_tokenizers(
    cfg: Config, files: RunFiles, train_pairs: list[tuple[str, str]] | None = None
) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers, each of its side's level; subword levels read (or, given `train_pairs`, train)
    RUN_DIR/sentencepiece/."""
    if any(level in SUBWORD_LEVELS for level in cfg.data.levels):
        from seq2seq.data import subword

        return subword.load_or_train(cfg.data, files.root, train_pairs)
    return plain_tokenizers(cfg.data)


def ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"train.run_dir: {path} exists and is not a directory") from None
    except OSError as e:
        raise ConfigError(f"train.run_dir: cannot create {path} ({e.strerror})") from None
    probe = path / ".write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"train.run_dir: {path} is not writable ({e.strerror})") from None


# Keys that do not change what is trained: a run may be resumed (or restarted before its first checkpoint) with others.
# init_from: a resume continues from the run's own last.pt and never reads it again.
FREE_KEYS = ("run_dir", "num_threads", "max_time", "max_steps", "epochs", "tensorboard", "save_every", "max_bad_steps", "init_from")


def config_differences(files: RunFiles, cfg: Config, sections: tuple[str, ...] | None = None) -> list[str]:
    """The keys (`train.lr`, ...) where the run directory's config differs from `cfg`, the free keys aside.

    `sections`: compare only these sections. An unreadable config differs in everything: ["config.yaml"].
    """
    try:
        theirs = config_to_dict(config_from_dict(read_yaml(files.config)))
    except ConfigError:
        return [files.config.name]
    ours = config_to_dict(cfg)
    differ = []
    for section in sections or tuple(ours):
        for key in sorted(set(ours[section]) | set(theirs.get(section, {}))):
            if section == "train" and key in FREE_KEYS:
                continue
            if ours[section].get(key) != theirs.get(section, {}).get(key):
                differ.append(f"{section}.{key}")
    return differ


def _named(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def prepare_run_dir(files: RunFiles, cfg: Config, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: a directory holding another run needs --resume or --overwrite.

    Before anything was trained (`build-vocab` made the directory), another config is welcome as long as its data
    settings, from which the vocabularies were built, are the same.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if files.root.exists() and not files.root.is_dir():
        raise ConfigError(f"train.run_dir: {files.root} exists and is not a directory")
    if resume:
        if not files.last.exists():
            raise CheckpointError(f"{files.last}: nothing to resume (no last.pt in {files.root}); start the run without --resume")
        differ = config_differences(files, cfg) if files.config.exists() else []
        if differ:
            raise ConfigError(
                f"{files.config}: the run in {files.root} was trained with another config ({_named(differ)} differ); "
                "resume it with that config"
            )
        return
    if overwrite:
        if files.root.exists():
            for path in (files.best, files.last, files.metrics, files.log, files.src_vocab, files.tgt_vocab, files.config):
                path.unlink(missing_ok=True)
            shutil.rmtree(files.sentencepiece, ignore_errors=True)
            for path in files.kept_files():
                path.unlink()
            shutil.rmtree(files.tensorboard, ignore_errors=True)
        return
    if files.last.exists() or files.best.exists():
        raise ConfigError(
            f"{files.root} already holds a trained run: add --resume to continue it or --overwrite to start again "
            "(in Python: resume=True / overwrite=True)"
        )
    differ = config_differences(files, cfg, sections=("data",)) if files.config.exists() else []
    if differ:
        raise ConfigError(
            f"{files.root} holds vocabularies built with other data settings ({_named(differ)} differ, {files.config}): "
            "use --overwrite or another train.run_dir"
        )


def load_or_build_vocabs(
    cfg: Config, files: RunFiles, train_pairs: list[tuple[str, str]] | None = None, quiet: bool = False
) -> tuple[Vocab, Vocab]:
    """Use the run directory's vocabularies, or build them from the training data and save them."""
    if files.src_vocab.exists() and files.tgt_vocab.exists():
        return Vocab.load(files.src_vocab), Vocab.load(files.tgt_vocab)
    if train_pairs is None:
        train_pairs = load_corpus(cfg.data, "train")
    ensure_dir(files.root)
    # The config first: vocabularies found without it could come from a run with other data settings.
    atomic_write_text(files.config, dump_config(cfg))
    src_tokenizer, tgt_tokenizer = load_or_build_tokenizers(cfg, files, train_pairs)
    src_vocab, tgt_vocab = build_vocabs(
        train_pairs, src_tokenizer, cfg.data.min_freq, cfg.data.max_size, cfg.data.shared_vocab, progress=not quiet,
        tgt_tokenizer=tgt_tokenizer,
    )
    save_vocabs(src_vocab, tgt_vocab, files.src_vocab, files.tgt_vocab)
    return src_vocab, tgt_vocab


def remove_stale_run_files(files: RunFiles) -> None:
    names = [p.name for p in (files.best, files.last, files.config, files.src_vocab, files.tgt_vocab, files.metrics)]
    remove_stale_temp_files(files.root, names)
