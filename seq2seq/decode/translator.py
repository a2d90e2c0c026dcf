"""One Translator for every model: a Backend (decode/backend) with its decode config and both text sides; text in,
text out. `open_model` is the one place that decides what a `--model` is: a checkpoint (a run directory or .pt file),
an export (a directory of `seq2seq export`) or, given several, an ensemble of them.

    from seq2seq import Translator
    t = Translator.load("runs/demo")                       # or an export directory, or ["runs/a", "runs/b"]
    t.translate(["I love you"])

No torch here: a checkpoint imports it when it loads (decode/torch_backend), an export never does.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

from seq2seq.config import Config, DecodeConfig
from seq2seq.data.encoding import Encoder, Example, Source, encode_sources
from seq2seq.decode.backend import Backend, Loaded
from seq2seq.decode.ensemble import Ensemble
from seq2seq.data.lexicon import read_lexicon
from seq2seq.data.tokenizer import normalize_whitespace
from seq2seq.data.vocab import UNK
from seq2seq.decode.search import Hypothesis, decode, nbest_beam
from seq2seq.errors import CheckpointError, ConfigError

log = logging.getLogger("seq2seq")

ModelArg = str | Path | None  # a --model: run directory, .pt file or export directory; None: the last trained run


class Known(NamedTuple):
    """A lexicon as the model's target ids: each known source's targets, the answer first (`Translator.with_lexicon`)."""

    path: Path
    ids: dict[str, tuple[tuple[int, ...], ...]]
    unusable: int  # entries whose targets the model cannot write (an unknown token): those words are decoded

    def lookup(self, sources: Sequence[Source]) -> list[tuple[tuple[int, ...], ...] | None]:
        return [self.ids.get(normalize_whitespace(s.text)) if s.text.strip() else None for s in sources]


@dataclass
class Translator:
    """A model ready to decode (one, or an ensemble of several): its backend, config, text sides and origin."""

    backend: Backend
    cfg: Config  # the (first) model's: decode defaults, max_src_len, the data's languages
    src: Encoder
    tgt: Encoder
    models: tuple[Loaded, ...]  # each model as opened: where it lives, its kind, steps and best score
    device: str
    precision: str  # fp32 | bf16 (exports and int8: fp32)
    quantize: str  # none | int8
    known: Known | None = None  # --lexicon: the words answered from it, not decoded

    @classmethod
    def load(
        cls, model: ModelArg | Sequence[ModelArg] = None, device: str = "auto", precision: str | None = None,
        quantize: str | None = None,
    ) -> "Translator":
        """`open_model`: a run directory, .pt file or export directory (None: the last trained run), or a list of them
        (an ensemble)."""
        return open_model(model, device=device, precision=precision, quantize=quantize)

    @property
    def paths(self) -> tuple[Path, ...]:
        """Each model's checkpoint file or export directory."""
        return tuple(m.path for m in self.models)

    @property
    def path(self) -> Path:
        """The model's checkpoint file or export directory (an ensemble's first)."""
        return self.paths[0]

    @property
    def name(self) -> str:
        """How reports name the model: its path; an ensemble's `ensemble of N: A + B`."""
        if len(self.paths) == 1:
            return str(self.path)
        return f"ensemble of {len(self.paths)}: " + " + ".join(map(str, self.paths))

    @property
    def kind(self) -> str:
        """checkpoint, export, or `ensemble of N checkpoints` / `exports` / `models`."""
        kinds = [m.kind for m in self.models]
        if len(kinds) == 1:
            return kinds[0]
        what = f"{kinds[0]}s" if len(set(kinds)) == 1 else "models"
        return f"ensemble of {len(kinds)} {what}"

    def with_lexicon(self, path: str | Path | None) -> "Translator":
        """This translator answering the words of the lexicon at `path` from it (data/lexicon; None: no lexicon). A
        word's targets become target ids; one that does not come back as written (a token the vocabulary lacks) is
        left to the model, and a warning counts them."""
        if path is None:
            return self
        lexicon = read_lexicon(path)
        ids: dict[str, tuple[tuple[int, ...], ...]] = {}
        unusable = 0
        for src, targets in lexicon.entries.items():
            encoded = [tuple(self.tgt.ids(t)) for t in targets]
            if all(UNK not in e and self.tgt.text(e) == t for e, t in zip(encoded, targets)):
                ids[src] = tuple(encoded)
            else:
                unusable += 1
        if unusable:
            log.warning(
                "warning: --lexicon %s: %d of %d words hold a token the model's target vocabulary lacks: the model "
                "decodes them", path, unusable, len(lexicon.entries),
            )
        return dataclasses.replace(self, known=Known(lexicon.path, ids, unusable))

    def answered(self, sources: Sequence[Source]) -> int:
        """How many of `sources` the lexicon answers (0 without one)."""
        return 0 if self.known is None else sum(k is not None for k in self.known.lookup(sources))

    def _decode(self, sources: Sequence[Source], d: DecodeConfig, **kwargs: object) -> list[list[Hypothesis]]:
        """search.decode of the sources the lexicon lacks; the known ones are its targets, score 0 (certain), no
        attention. `kwargs`: decode's nbest, return_attention, progress."""
        known = self.known.lookup(sources) if self.known is not None else [None] * len(sources)
        todo = [s.ids for s, k in zip(sources, known) if k is None]
        decoded = iter(decode(self.backend, todo, d, **kwargs) if todo else [])  # type: ignore[arg-type]
        nbest = int(kwargs.get("nbest", 1))  # type: ignore[call-overload]
        return [next(decoded) if k is None else [Hypothesis(list(t), 0.0, None) for t in k[:nbest]] for k in known]

    def decode_config(self, beam_size: int | None = None, batch_size: int | None = None) -> DecodeConfig:
        """The model's decode config with the per-call choices a user made (--beam, --batch-size); None keeps it."""
        changes = {name: value for name, value in (("beam_size", beam_size), ("batch_size", batch_size)) if value is not None}
        return dataclasses.replace(self.cfg.decode, **changes)

    def sources(self, texts: Sequence[str], warn_truncated: bool = True) -> list[Source]:
        """Each text as the model reads it, tokenized once (data/encoding.encode_sources): ids ending in <eos>,
        truncated to decode.max_src_len tokens; `warn_truncated`: one warning naming the truncated lines."""
        return encode_sources(self.src, texts, self.cfg.decode.max_src_len, warn_truncated)

    def hypotheses(
        self, sources: Sequence[Source], batch_size: int | None = None, return_attention: bool = False, progress: bool = False,
        beam_size: int | None = None,
    ) -> list[Hypothesis]:
        """The best hypothesis per source (`sources`' result; `progress`: a progress bar on stderr).

        beam_size / batch_size None: those of the model's decode config (beam 1: greedy).
        """
        d = self.decode_config(beam_size, batch_size)
        nbests = self._decode(sources, d, return_attention=return_attention, progress=progress)
        return [hyps[0] for hyps in nbests]

    def nbest(
        self, sources: Sequence[Source], nbest: int, beam_size: int | None = None, batch_size: int | None = None
    ) -> list[list[tuple[float, str]]]:
        """The `nbest` best (score, translation) pairs per source (`sources`' result), best first; an empty text gives none.

        beam_size None: the larger of decode.beam_size and `nbest`; it must be at least `nbest`.
        """
        d = self.decode_config(nbest_beam(nbest, beam_size, self.cfg.decode.beam_size), batch_size)
        results = self._decode(sources, d, nbest=nbest)
        return [[(h.score, self.detokenize(h.ids)) for h in hyps] if s.text.strip() else [] for s, hyps in zip(sources, results)]

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tgt.text(ids)

    def translate(self, texts: Sequence[str], batch_size: int | None = None, beam_size: int | None = None) -> list[str]:
        """One output line per input text, in input order (an empty input gives an empty output)."""
        hyps = self.hypotheses(self.sources(texts), batch_size, beam_size=beam_size)
        return [self.detokenize(h.ids) if text.strip() else "" for text, h in zip(texts, hyps)]

    def loss(self, examples: Sequence[Example], batch_size: int) -> tuple[float, int] | None:
        """Teacher-forced summed NLL of `examples` and their target tokens; None for an export or an ensemble."""
        return self.backend.loss(examples, batch_size)

    @classmethod
    def of(cls, models: Sequence[Loaded]) -> "Translator":
        """One Translator for the opened `models`: the model itself, or their ensemble when there are several, whose
        vocabularies and tokenizers must agree (the first model's config gives the decoding defaults)."""
        first = models[0]
        for other in models[1:]:
            check_compatible(first, other)
        backend = first.backend if len(models) == 1 else Ensemble([m.backend for m in models])

        def joined(values: Sequence[str]) -> str:
            return values[0] if len(set(values)) == 1 else "/".join(values)

        return cls(
            backend, first.cfg, first.src, first.tgt, tuple(models),
            joined([m.device for m in models]), joined([m.precision for m in models]), joined([m.quantize for m in models]),
        )


def check_compatible(first: Loaded, other: Loaded) -> None:
    """Models decode together only with the same vocabularies and tokenizers: a ConfigError naming the difference."""
    for side in ("src", "tgt"):
        a, b = getattr(first, side), getattr(other, side)
        name = "source" if side == "src" else "target"
        if a.vocab != b.vocab:
            raise ConfigError(
                f"--model {other.path}: its {name} vocabulary differs from {first.path}'s ({len(b.vocab)} against "
                f"{len(a.vocab)} tokens{_first_difference(a.vocab.itos, b.vocab.itos)}): an ensemble needs the same vocabularies"
            )
        if a.tokenizer != b.tokenizer:
            raise ConfigError(
                f"--model {other.path}: its {name} tokenizer differs from {first.path}'s ({_tokenizer(b)} against "
                f"{_tokenizer(a)}): an ensemble needs the same tokenizers"
            )


def _first_difference(a: Sequence[str], b: Sequence[str]) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    return "" if i is None else f"; id {i} is {b[i]!r} against {a[i]!r}"


def _tokenizer(encoder: Encoder) -> str:
    t = encoder.tokenizer
    sp = "" if t.sp_model is None else f", a {len(t.sp_model)}-byte sentencepiece model"
    return f"level {t.level}, lowercase {t.lowercase}{sp}"


def open_model(
    models: ModelArg | Sequence[ModelArg] = None, *, device: str = "auto", precision: str | None = None,
    quantize: str | None = None, threads: int = 0,
) -> Translator:
    """The one place that decides what a `--model` is. Each of `models` (one, or several for an ensemble; None: the
    last trained run) is an export directory (`seq2seq export`; onnxruntime, no torch, fp32, `threads` 0:
    onnxruntime's choice) or a run directory or .pt checkpoint (torch, on `device`).

    `precision` None: a checkpoint's train.precision resolved for the device (auto | fp32 | bf16 override it; an
    export decodes in fp32 only); `quantize` None: the model's decode.quantize (an export's is fixed at export time).
    """
    listed = list(models) if isinstance(models, (list, tuple)) else [models]
    if not listed:
        listed = [None]
    return Translator.of([_open_one(m, device, precision, quantize, threads) for m in listed])


def resolve_model(model: ModelArg) -> tuple[Path, str]:
    """A `--model` -> (its checkpoint file or export directory, checkpoint | export), without reading it (no torch):
    the cheap check a command makes before it loads anything; errors name every kind a --model may be."""
    from seq2seq.model.checkpoint import resolve_model_path
    from seq2seq.model.export_format import is_export

    if is_export(model):
        return Path(str(model)), "export"
    if model is not None and not Path(model).exists():
        raise CheckpointError(f"{model}: no such model (give a run directory, a .pt checkpoint or an export directory)")
    try:
        return resolve_model_path(model), "checkpoint"
    except CheckpointError as e:
        if model is not None and Path(model).is_dir():
            raise CheckpointError(f"{model}: run directory holds no best.pt or last.pt (nor is it an export: no export.json)") from None
        raise e from None


def _open_one(model: ModelArg, device: str, precision: str | None, quantize: str | None, threads: int) -> Loaded:
    path, kind = resolve_model(model)
    if kind == "export":
        from seq2seq.decode.onnx_backend import open_export

        return open_export(path, precision, quantize, threads)
    from seq2seq.decode.torch_backend import open_checkpoint  # torch: only for a checkpoint
    from seq2seq.model.checkpoint import Checkpoint

    return open_checkpoint(Checkpoint.read(path), device, precision, quantize)
