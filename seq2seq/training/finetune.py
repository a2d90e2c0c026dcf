"""Fine-tuning (train.init_from): a new run that starts from a trained model's weights, vocabularies and
tokenizers, with a fresh optimizer, schedule and step count, on the data of its own config.

Which config keys the model decides: its architecture (`STRICT["model"]`) and how text becomes ids
(`STRICT["data"]`, each side's level, the sentencepiece keys): the vocabularies and tokenizers are the model's, not
rebuilt from the new data. A key left at its default takes the model's value; a key set to another value than the
model's is a ConfigError naming it. Levels compare as they take effect, per side (`src_level: char` agrees with a
`level: char` model), and the sentencepiece keys only where the model has a sentencepiece model they decide
(`data/tokenizer.subword_keys`: a word-level model takes any `vocab_size`).
The config cannot tell a key written out from a key left out, so a key written out at its default value is taken as
left out (inherited). Dropout and the Bahdanau loop (`FREE`) change no weight: a value other than the default is
used, the default inherits the model's.

The source model is only read: everything the new run needs is written into the new run directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from seq2seq.config import Config, DataConfig, config_from_dict, config_to_dict, read_yaml, replace
from seq2seq.data.tokenizer import SUBWORD_LEVELS, subword_keys
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.files import atomic_write_bytes
from seq2seq.model.checkpoint import Checkpoint, resolve_model_path
from seq2seq.runfiles import RunFiles
from seq2seq.metric import label as metric_label

log = logging.getLogger("seq2seq")

STRICT: dict[str, tuple[str, ...]] = {
    "model": ("emb_size", "hidden_size", "enc_layers", "dec_layers", "bidirectional", "attention", "tie_embeddings"),
    "data": ("lowercase", "shared_vocab", "min_freq", "max_size"),
}
TAKEN: dict[str, tuple[str, ...]] = {  # checked by check_levels and subword_keys, then the model's values
    "data": ("level", "src_level", "tgt_level", "vocab_size", "sp_shared"),
}
FREE: dict[str, tuple[str, ...]] = {
    "model": ("dropout", "emb_dropout", "hidden_dropout", "output_dropout", "bahdanau_loop"),
}


def start(cfg: Config, files: RunFiles, resume: bool) -> tuple[Config, Checkpoint | None]:
    """The config this run trains with, and the model it fine-tunes (train.init_from; None: from scratch).

    A resumed run continues from its own last.pt: train.init_from is not read again, and a fine-tuning run takes the
    model's keys from its own config.yaml."""
    if resume:
        if cfg.train.init_from is not None:
            log.info("--resume: the run continues from its own last.pt; train.init_from is not read")
        return resumed_config(cfg, files), None
    if cfg.train.init_from is None:
        return cfg, None
    source = read_source(cfg.train.init_from, files)
    cfg = inherit_config(cfg, source.config, source.path or cfg.train.init_from)
    log.info("%s", describe(source))
    return cfg, source


def read_source(init_from: str, files: RunFiles) -> Checkpoint:
    """The model to start from: a run directory's best.pt (last.pt when it has none) or a .pt file; every problem
    is one CheckpointError / ConfigError line naming train.init_from."""
    try:
        path = resolve_model_path(init_from)
    except CheckpointError as e:
        raise CheckpointError(f"train.init_from: {e}") from None
    if path.resolve().parent == files.root.resolve():
        raise ConfigError(
            f"train.init_from: {init_from} is in this run's directory {files.root}: fine-tune into another "
            "train.run_dir (or continue that run with --resume)"
        )
    try:
        return Checkpoint.read(path)
    except CheckpointError as e:
        raise CheckpointError(f"train.init_from: {e}") from None


def inherit_config(cfg: Config, source: Config, where: str | Path) -> Config:
    """`cfg` with the model and tokenization keys of `source` (see the module docstring); `where` names the source."""
    defaults, ours, theirs = config_to_dict(Config()), config_to_dict(cfg), config_to_dict(source)
    strict = {**STRICT, "data": STRICT["data"] + subword_keys(source.data.levels)}
    for section, keys in strict.items():
        if section == "data":
            check_levels(cfg.data, source.data, where)
        for key in keys:
            mine, model = ours[section][key], theirs[section][key]
            if mine != defaults[section][key] and mine != model:
                raise contradiction(f"{section}.{key}", mine, model, where)
    for section, keys in [*STRICT.items(), *TAKEN.items()]:
        for key in keys:
            ours[section][key] = theirs[section][key]
    for section, keys in FREE.items():
        for key in keys:
            if ours[section][key] == defaults[section][key]:
                ours[section][key] = theirs[section][key]
    return config_from_dict(ours)


def check_levels(ours: DataConfig, model: DataConfig, where: str | Path) -> None:
    """Each side's level that `ours` sets (its `src_level` / `tgt_level`, else a `level` other than the default) must
    be the model's level of that side, however the model's config set it."""
    default = DataConfig().level
    for side, (model_level, mine) in enumerate(zip(model.levels, ours.levels)):
        key = ours.level_key(side)
        if key == "data.level" and ours.level == default:
            continue  # left out: inherited
        if mine != model_level:
            raise contradiction(key, mine, model_level, where)


def contradiction(key: str, mine: Any, model: Any, where: str | Path) -> ConfigError:
    return ConfigError(f"{key}: {mine!r} contradicts the model in train.init_from ({where}: {model!r}); leave the key out to inherit it")


def resumed_config(cfg: Config, files: RunFiles) -> Config:
    """For --resume of a fine-tuning run: the inherited keys come from the run's own config.yaml (written when it
    started), not from train.init_from, which is not read again."""
    try:
        own = config_from_dict(read_yaml(files.config))
    except ConfigError:
        return cfg  # prepare_run_dir names the unreadable config
    if own.train.init_from is None:
        return cfg
    # its init_from stays in config.yaml (rewritten at every start), so the next resume inherits too
    return replace(inherit_config(cfg, own, files.config), "train", init_from=own.train.init_from)


def write_inherited(files: RunFiles, cfg: Config, source: Checkpoint) -> None:
    """The source's vocabularies and sentencepiece model(s) into the new run directory, where the build functions
    read them (so a resume reads them there too); vocabularies already there (build-vocab) are replaced."""
    if any(level in SUBWORD_LEVELS for level in cfg.data.levels):
        from seq2seq.data import subword

        paths = files.subword_models(subword.joint(cfg.data))
        for path, tokenizer in zip(paths, (source.src_tokenizer, source.tgt_tokenizer)):
            if tokenizer.sp_model is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, tokenizer.sp_model)
    source.src_vocab.save(files.src_vocab)
    source.tgt_vocab.save(files.tgt_vocab)


def load_weights(model: torch.nn.Module, source: Checkpoint) -> None:
    """The source's weights into the freshly built model."""
    try:
        model.load_state_dict(source.weights)
    except (RuntimeError, KeyError, TypeError) as e:
        first = " ".join(str(e).strip().splitlines()[:2])[:300]
        raise CheckpointError(f"train.init_from: {source.path}: weights do not fit the model of its config: {first}") from None


def describe(source: Checkpoint) -> str:
    """The log line that says where a fine-tuning run starts."""
    scores: dict[str, Any] = source.scores or {}
    metric = source.config.train.metric  # what its best.pt was chosen by: a G2P model's CER, not its BLEU
    value = scores.get(f"val_{metric}")
    score = f", val {metric_label(metric)} {value:.2f}" if isinstance(value, (int, float)) else ""
    return (
        f"fine-tuning {source.path} (trained {source.step} steps{score}): its weights, vocabularies "
        f"({len(source.src_vocab)} / {len(source.tgt_vocab)} types) and tokenizers; a fresh optimizer, schedule and step count"
    )
