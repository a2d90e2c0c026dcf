"""Typed configuration: YAML -> frozen dataclasses, with `--set a.b=value` overrides.

Defaults live here and nowhere else. Every key is checked on the way in: an unknown key, a wrong type
or an out-of-range value raises `ConfigError` naming the dotted key (with a "did you mean" for typos).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from seq2seq.errors import ConfigError
from seq2seq.metric import SELECTABLE


def _opt(default: Any, help: str, **checks: Any) -> Any:
    """A dataclass field with its help text and range checks (`min`, `max`, `choices`, `min_excl`, `max_excl`)."""
    return field(default=default, metadata={"help": help, **checks})


LEVELS = ("word", "char", "space", "bpe", "unigram")  # data.level, data.src_level, data.tgt_level


@dataclass(frozen=True)
class DataConfig:
    train: str = _opt("", "training corpus: a path prefix (parallel files PREFIX.SRC_LANG + PREFIX.TGT_LANG) or a TSV file")
    valid: str = _opt("", "validation corpus, same form as `train`")
    test: str = _opt("", "test corpus, same form as `train` (optional; used by `eval --split test`)")
    format: str = _opt("parallel", "corpus format: `parallel` files or `tsv` (src<TAB>tgt); plain or .gz", choices=("parallel", "tsv"))
    src_lang: str = _opt("src", "suffix of the source files (`train.de`: `de`)")
    tgt_lang: str = _opt("tgt", "suffix of the target files")
    level: str = _opt(
        "word",
        "tokenization of both sides: `word` (reversible, splits punctuation), `char`, `space` (split on whitespace only: "
        "pre-tokenized symbols such as phonemes or tags), or sentencepiece subwords `bpe` / `unigram` (trained on the "
        "training data, stored in the run directory and the checkpoint)",
        choices=LEVELS,
    )
    src_level: Optional[str] = _opt(None, "tokenization of the source side, one of the `level` choices (null: `level`)", choices=LEVELS)
    tgt_level: Optional[str] = _opt(None, "tokenization of the target side, one of the `level` choices (null: `level`)", choices=LEVELS)
    lowercase: bool = _opt(False, "lowercase all text before tokenizing")
    max_len: int = _opt(100, "drop training pairs with more tokens than this on either side (never applied to eval data)", min=1)
    min_freq: int = _opt(1, "minimum count of a token to enter the vocabulary", min=1)
    max_size: Optional[int] = _opt(None, "maximum vocabulary size, specials excluded (null: no limit)", min=1)
    shared_vocab: bool = _opt(False, "one vocabulary for source and target")
    vocab_size: int = _opt(8000, "bpe / unigram: sentencepiece vocabulary size (an upper bound on small corpora)", min=16)
    sp_shared: bool = _opt(
        True, "bpe / unigram: one sentencepiece model trained on both sides where both use the same subword level "
        "(false: one per side; sides of different levels always get one each)",
    )

    @property
    def levels(self) -> tuple[str, str]:
        """The source and target levels: `src_level` / `tgt_level`, each `level` when unset."""
        return self.src_level or self.level, self.tgt_level or self.level

    @property
    def sides(self) -> str:
        """What the model maps, for info and the serve page: the languages of parallel files (`en -> de`); for TSV
        data, whose files carry no language suffix, the levels (`char -> space`)."""
        if self.format == "tsv":
            return " -> ".join(self.levels)
        return f"{self.src_lang} -> {self.tgt_lang}"

    def level_key(self, side: int) -> str:
        """The key that sets side `side`'s level (0: source, 1: target), for messages: `data.src_level` /
        `data.tgt_level` when set, else `data.level`."""
        own = ("src_level", "tgt_level")[side]
        return f"data.{own}" if getattr(self, own) is not None else "data.level"


@dataclass(frozen=True)
class ModelConfig:
    emb_size: int = _opt(256, "embedding size", min=1)
    hidden_size: int = _opt(512, "GRU hidden size (per direction in the encoder)", min=1)
    enc_layers: int = _opt(1, "encoder GRU layers", min=1)
    dec_layers: int = _opt(1, "decoder GRU layers", min=1)
    bidirectional: bool = _opt(True, "bidirectional encoder")
    attention: str = _opt(
        "bahdanau",
        "`bahdanau`: additive attention on the previous decoder state, context fed to the GRU; "
        "`luong`: bilinear attention on the current state (the GRU runs over the whole target at once)",
        choices=("bahdanau", "luong"),
    )
    dropout: float = _opt(
        0.3, "dropout on embeddings, between GRU layers and on their outputs, and before the output layer (see the three keys below)",
        min=0.0, max=0.9,
    )
    tie_embeddings: bool = _opt(False, "share the target embedding matrix with the output projection")
    emb_dropout: Optional[float] = _opt(None, "dropout on source and target embeddings (null: model.dropout)", min=0.0, max=0.9)
    hidden_dropout: Optional[float] = _opt(
        None, "dropout between stacked GRU layers and on the GRU outputs (null: model.dropout)", min=0.0, max=0.9
    )
    output_dropout: Optional[float] = _opt(None, "dropout on the pre-output, before the output layer (null: model.dropout)", min=0.0, max=0.9)
    bahdanau_loop: str = _opt(
        "auto",
        "the Bahdanau decoder loop of teacher-forced passes (training steps and the validation loss; decoding always runs "
        "the reference): `reference` (model/network.py), `fast` (model/fast_bahdanau.py, same values and gradients), "
        "`auto`: fast on the CPU, where it measured 11-19% faster per training step, reference elsewhere "
        "(the rule and the figures: model/network.Seq2Seq.uses_fast_bahdanau)",
        choices=("auto", "reference", "fast"),
    )


@dataclass(frozen=True)
class TrainConfig:
    run_dir: Optional[str] = _opt(None, "where the run is written (null: runs/<config stem>)")
    init_from: Optional[str] = _opt(
        None,
        "fine-tune: start a new run from this model (a run directory, i.e. its best.pt, or a .pt file): its weights, "
        "vocabularies and tokenizers, with a fresh optimizer, schedule and step count, on this config's data. Model and "
        "tokenization keys left at their defaults take the model's values; others must agree with it (null: train from scratch)",
    )
    seed: int = _opt(1234, "one seed for data order, initialisation and dropout", min=0)
    device: str = _opt("auto", "`auto` (CUDA when present), `cpu` or `cuda`", choices=("auto", "cpu", "cuda"))
    precision: str = _opt("auto", "`fp32`, `bf16` (autocast; loss in fp32) or `auto`: bf16 where the hardware runs it natively (a CUDA device with bf16, a CPU with AVX512_BF16 or AMX-BF16), else fp32; `auto` decodes a model below 4M parameters in fp32 on a CPU, where it decodes faster", choices=("auto", "fp32", "bf16"))
    batch_size: int = _opt(64, "sentences per batch (ignored when max_tokens is set)", min=1)
    max_tokens: Optional[int] = _opt(None, "batch by tokens: at most this many per batch, counted as sentences x the padded length of the longer side (source with <eos> or decoder steps, whichever is longer); a longer sentence gets a batch of its own", min=1)
    epochs: int = _opt(10, "number of passes over the training data", min=1)
    max_steps: Optional[int] = _opt(None, "stop after this many updates (null: no limit)", min=1)
    max_time: Optional[float] = _opt(None, "stop after this many minutes of training (null: no limit)", min_excl=0.0)
    lr: float = _opt(1e-3, "Adam learning rate", min_excl=0.0)
    weight_decay: float = _opt(0.0, "AdamW weight decay", min=0.0)
    clip_grad: float = _opt(1.0, "clip the gradient norm to this value (0: off)", min=0.0)
    label_smoothing: float = _opt(0.0, "label smoothing of the masked loss", min=0.0, max=0.99)
    teacher_forcing_ratio: float = _opt(
        1.0, "probability of feeding the gold previous token; otherwise the model's own greedy prediction", min=0.0, max=1.0
    )
    valid_every: int = _opt(0, "validate every N updates (0: at the end of each epoch)", min=0)
    valid_every_minutes: Optional[float] = _opt(
        None,
        "validate every N minutes of training time, as max_time counts it (validations included), at each multiple of "
        "N (a mark passed while validating is skipped); not with valid_every (null: valid_every decides)",
        min_excl=0.0,
    )
    log_every: int = _opt(50, "write a training-loss line to train.log every N updates", min=1)
    num_threads: Optional[int] = _opt(None, "CPU threads for torch (null: torch's default)", min=1)
    tensorboard: bool = _opt(False, "also write TensorBoard event files into RUN_DIR/tensorboard (needs the `tensorboard` extra)")
    schedule: str = _opt(
        "constant",
        "learning-rate schedule after `warmup_steps` of linear warmup: `constant`, `plateau` (multiply by plateau_factor "
        "after plateau_patience validations without a better score), `warmup_inverse_sqrt` (lr * sqrt(warmup_steps / step)) "
        "`warmup_cosine` (cosine decay to min_lr at decay_steps) or `wsd` (warmup, a stable rate, then a linear decay to "
        "min_lr over the last decay_fraction of decay_steps). Under max_time, warmup_cosine and wsd plan their horizon "
        "from the measured pace (see decay_steps)",
        choices=("constant", "plateau", "warmup_inverse_sqrt", "warmup_cosine", "wsd"),
    )
    warmup_steps: int = _opt(0, "updates of linear learning-rate warmup from 0 (warmup_inverse_sqrt needs at least 1)", min=0)
    min_lr: float = _opt(0.0, "the learning rate never falls below this (plateau, warmup_cosine, wsd)", min=0.0)
    plateau_factor: float = _opt(0.5, "plateau: multiply the learning rate by this on a plateau", min_excl=0.0, max=1.0)
    plateau_patience: int = _opt(2, "plateau: validations without a better score (train.metric) before the learning rate drops", min=1)
    decay_steps: Optional[int] = _opt(
        None,
        "warmup_cosine, wsd: the update at which the decay reaches min_lr, the horizon (null: the updates the run will make: "
        "the fewest of max_steps, epochs x batches per epoch and, with max_time, the updates the time budget holds at the "
        "pace measured early in the run; the rate holds at its peak until that is planned)",
        min=1,
    )
    decay_fraction: float = _opt(
        0.2, "wsd: the share of the horizon (decay_steps) spent decaying to min_lr, at its end", min_excl=0.0, max=1.0
    )
    decay_shape: str = _opt(
        "linear",
        "wsd: the decay's curve from lr to min_lr over its share p in [0, 1] of the decay: `linear` (1 - p) or `1-sqrt` "
        "(1 - sqrt(p): faster at first, the cooldown Hägele et al. 2024 found better than linear)",
        choices=("linear", "1-sqrt"),
    )
    ema_decay: float = _opt(
        0.0,
        "keep an exponential moving average of the weights, `ema = decay * ema + (1 - decay) * weights` after each update "
        "(0: off). Each validation scores both (the EMA's as val_ema_* in metrics.jsonl); best.pt, the k best, early "
        "stopping and the plateau follow the better",
        min=0.0, max_excl=1.0,
    )
    metric: str = _opt(
        "bleu",
        "the validation score that picks best.pt and the k best checkpoints and drives early stopping and the plateau "
        "schedule: `bleu`, `chrf`, `exact_match` (higher is better), `cer` or `wer` (the token error rate; error rates: "
        "lower is better)",
        choices=SELECTABLE,
    )
    patience: Optional[int] = _opt(None, "early stopping: stop after this many validations without a better score (train.metric; null: off)", min=1)
    keep_best: int = _opt(1, "keep the k best checkpoints as ckpt-STEP.pt (weights only) for `seq2seq average`; 1: best.pt only", min=1)
    save_every: int = _opt(0, "also write last.pt every N updates, so a crash loses at most N updates (0: only at validation)", min=0)
    max_bad_steps: int = _opt(5, "stop training after this many non-finite losses in a row (each one skips its update)", min=1)


@dataclass(frozen=True)
class DecodeConfig:
    beam_size: int = _opt(1, "beam size (1: greedy)", min=1)
    batch_size: int = _opt(128, "sentences per decoding batch (128: the fastest or within 3% of it for greedy and beam 5 on a 2-core AVX2 CPU, docs/performance.md)", min=1)
    max_len_a: float = _opt(1.5, "maximum output length is a * source length + b", min=0.0)
    max_len_b: int = _opt(10, "maximum output length is a * source length + b", min=0)
    length_penalty: float = _opt(1.0, "beam search: GNMT length penalty alpha; hypotheses rank by log-prob / ((5 + len) / 6) ** alpha", min=0.0)
    min_len: int = _opt(0, "no <eos> before this many output tokens", min=0)
    max_src_len: int = _opt(250, "`translate` truncates longer inputs to this many tokens, with a warning", min=1)
    quantize: str = _opt(
        "none", "`int8`: decode on the CPU with int8 weights (linear layers and GRUs, applied at load time; "
        "the checkpoint is unchanged), `none`: the trained weights as they are", choices=("none", "int8"),
    )


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "decode": DecodeConfig}


# Names users bring from other toolkits, mapped by meaning to ours (a spelling match would not find them).
ALIASES: dict[str, str] = {
    "learning_rate": "train.lr", "lr_rate": "train.lr", "learningrate": "train.lr",
    "batch": "train.batch_size", "batch_size": "train.batch_size", "batch_tokens": "train.max_tokens",
    "max_epochs": "train.epochs", "num_epochs": "train.epochs", "grad_clip": "train.clip_grad",
    "clip_grad_norm": "train.clip_grad", "max_grad_norm": "train.clip_grad", "smoothing": "train.label_smoothing",
    "warmup": "train.warmup_steps", "scheduler": "train.schedule", "scheduling": "train.schedule",
    "hidden": "model.hidden_size", "hidden_dim": "model.hidden_size", "rnn_size": "model.hidden_size",
    "embedding_size": "model.emb_size", "embedding_dim": "model.emb_size", "emb_dim": "model.emb_size",
    "num_layers": "model.enc_layers", "layers": "model.enc_layers", "attention_type": "model.attention",
    "tied_embeddings": "model.tie_embeddings", "tie_weights": "model.tie_embeddings",
    "beam": "decode.beam_size", "beam_width": "decode.beam_size", "alpha": "decode.length_penalty",
    "max_output_length": "decode.max_len_b", "src": "data.src_lang", "tgt": "data.tgt_lang",
    "source": "data.src_lang", "target": "data.tgt_lang", "vocab": "data.vocab_size", "voc_limit": "data.max_size",
    "voc_min_freq": "data.min_freq", "max_sent_length": "data.max_len",
}


def _did_you_mean(name: str, choices: Sequence[str], section: str | None = None) -> str:
    """A suggestion for an unknown key or section: by meaning (ALIASES), else by spelling, else the valid names."""
    alias = ALIASES.get(name.lower()) if section is not None else None
    if alias is not None:
        alias_section, alias_key = alias.split(".")
        return f" (did you mean {alias_key!r}?)" if alias_section == section else f" (did you mean {alias!r}?)"
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(choices))})"


def _check_value(key: str, f: dataclasses.Field, value: Any, hints: Mapping[str, Any]) -> Any:
    """Return `value` coerced to the field's type, or raise ConfigError naming `key`."""
    hint = hints[f.name]
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: must not be null")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {shown}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {shown}")
    elif hint is float:
        if isinstance(value, str):
            # YAML 1.1 reads `1e-3` (no dot) as a string; accept what float() reads as a finite number.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {shown}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: expected a finite number, got {shown}")
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {shown}")
    meta = f.metadata
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(meta['choices'])}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{key}: must be >= {meta['min']}, got {value!r}")
    if "min_excl" in meta and value <= meta["min_excl"]:
        raise ConfigError(f"{key}: must be > {meta['min_excl']}, got {value!r}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{key}: must be <= {meta['max']}, got {value!r}")
    if "max_excl" in meta and value >= meta["max_excl"]:
        raise ConfigError(f"{key}: must be < {meta['max_excl']}, got {value!r}")
    return value


def _build_section(name: str, cls: type, values: Any) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{name}: expected a mapping of keys, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        dotted = f"{name}.{key}"
        if key not in fields:
            raise ConfigError(f"{dotted}: unknown key{_did_you_mean(str(key), fields, name)}")
        kwargs[key] = _check_value(dotted, fields[key], value, hints)
    return cls(**kwargs)


def config_from_dict(raw: Any) -> Config:
    """Build and check a Config from a nested mapping (parsed YAML, or a checkpoint's copy)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"top level: expected a mapping with sections {', '.join(SECTIONS)}, got {type(raw).__name__}")
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(f"{key}: unknown section{_did_you_mean(str(key), SECTIONS)}")
    cfg = Config(**{name: _build_section(name, cls, raw.get(name)) for name, cls in SECTIONS.items()})
    if cfg.train.valid_every_minutes is not None and cfg.train.valid_every:
        raise ConfigError(
            f"train.valid_every_minutes: validates by the clock, train.valid_every ({cfg.train.valid_every}) by "
            "updates: set one of them (train.valid_every: 0)"
        )
    return cfg


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    return dataclasses.asdict(cfg)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings (values parsed as YAML scalars) to a raw config mapping."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: the key must be section.key, e.g. train.lr=3e-4")
        section, key = parts
        if section not in SECTIONS:
            raise ConfigError(f"--set {dotted}: unknown section{_did_you_mean(section, SECTIONS)}")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        current = raw.get(section)
        if current is None:
            current = {}
        if not isinstance(current, dict):
            raise ConfigError(f"{section}: expected a mapping of keys, got {type(current).__name__}")
        raw[section] = {**current, key: value}
    return raw


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a YAML config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = e.object.count(b"\n", 0, e.start) + 1
        column = e.start - e.object.rfind(b"\n", 0, e.start)  # 1-based, in bytes, as data/corpus.decode_lines says it
        raise ConfigError(f"{path}:{line}:{column}: not valid UTF-8 (byte 0x{e.object[e.start]:02x})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or "malformed YAML"
        context, context_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
            problem += f" ({context} at line {context_mark.line + 1})"
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (or start from defaults when `path` is None) and apply `--set` overrides."""
    raw = read_yaml(path) if path is not None else {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}top level: expected a mapping with sections {', '.join(SECTIONS)}, got {type(raw).__name__}")
    overridden = {item.split("=", 1)[0].strip() for item in overrides if "=" in item}
    try:
        return config_from_dict(apply_overrides(raw, overrides))
    except ConfigError as e:
        message = str(e)
        if message.startswith("--set"):
            raise
        if message.split(":", 1)[0] in overridden:  # the bad value came from --set, not from the file
            raise ConfigError(f"--set {message}") from None
        if path is not None and not message.startswith(str(path)):
            raise ConfigError(f"{path}: {message}") from None
        raise


def choices(section: str, key: str) -> tuple[str, ...]:
    """The valid values of a key that takes a fixed set, e.g. choices("decode", "quantize")."""
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
    return tuple(fields[key].metadata["choices"])


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)


def replace(cfg: Config, section: str, **changes: Any) -> Config:
    """A copy of `cfg` with keys of one section changed, checked like any override."""
    raw = config_to_dict(cfg)
    raw[section] = {**raw[section], **changes}
    return config_from_dict(raw)
