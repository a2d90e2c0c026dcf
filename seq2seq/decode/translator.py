"""A trained model ready to use: checkpoint -> model + tokenizers + vocabularies, and text in, text out.

    from seq2seq import Translator
    t = Translator.load("runs/demo")
    t.translate(["I love you"])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from seq2seq.model.checkpoint import Checkpoint, resolve_model_path
from seq2seq.config import Config, DecodeConfig
from seq2seq.config import replace as config_replace
from seq2seq.data.encoding import Encoder, Source, encode_sources
from seq2seq.data.results import nbest_beam, nbest_texts
from seq2seq.device import autocast, resolve_device, resolve_precision
from seq2seq.errors import CheckpointError
from seq2seq.model.network import Seq2Seq
from seq2seq.decode.search import Hypothesis, decode


def _check_finite(ckpt: Checkpoint) -> None:
    """Refuse weights holding NaN or infinity (a run that diverged): every output would be empty, every score NaN.

    A sum per tensor screens them (4 ms for 66 MB of weights, against 60 ms for `isfinite` over every
    element); only a tensor whose sum is not finite is looked at element by element, so huge finite
    weights whose sum overflows are not mistaken for broken ones.
    """
    for name, weight in ckpt.weights.items():
        if weight.is_floating_point() and not torch.isfinite(weight.sum()) and not bool(torch.isfinite(weight).all()):
            where = ckpt.path if ckpt.path is not None else "checkpoint"
            raise CheckpointError(f"{where}: weights {name} hold NaN or infinite values (the training diverged?): it cannot translate")


@dataclass
class Translator:
    """A model ready to decode: its config, the model on its device, both encoders and the checkpoint it came from."""

    cfg: Config
    model: Seq2Seq
    src: Encoder
    tgt: Encoder
    device: torch.device
    precision: str
    path: Path  # the checkpoint file
    checkpoint: Checkpoint | None  # decoding_only(), its weights the fp32 model's (with int8, not `model`'s); None: built in memory

    @classmethod
    def load(
        cls, model: str | Path | None = None, device: str = "auto", precision: str | None = None, quantize: str | None = None
    ) -> "Translator":
        """Load a run directory or .pt file (None: the last trained run) for decoding.

        `device`: auto, cpu or cuda (auto is the CPU with int8 weights, which run there only); `precision` None:
        the checkpoint's train.precision, resolved for the device; `quantize` None: the checkpoint's
        decode.quantize (none | int8: int8 weights on the CPU, decoding in fp32).
        """
        path = resolve_model_path(model)
        return cls.from_checkpoint(Checkpoint.read(path), device, precision, quantize)

    @classmethod
    def from_checkpoint(
        cls, ckpt: Checkpoint, device: str, precision: str | None, quantize: str | None = None
    ) -> "Translator":
        """A Translator for a checkpoint already read (see `load` for `device`, `precision` and `quantize`)."""
        cfg = ckpt.config
        if quantize is not None and quantize != cfg.decode.quantize:
            cfg = config_replace(cfg, "decode", quantize=quantize)
        dev = resolve_device("cpu" if device == "auto" and cfg.decode.quantize != "none" else device)
        _check_finite(ckpt)
        net = ckpt.build_model().to(dev)
        # the fp32 model's tensors, not a copy; with int8 `model` below is another model, made from them
        kept = dataclasses.replace(ckpt.decoding_only(), weights=net.state_dict())
        if cfg.decode.quantize != "none":
            from seq2seq.model.quantize import quantize_for_decoding

            net = quantize_for_decoding(net, cfg.decode.quantize, dev)
            precision = "fp32"  # int8 matmuls with fp32 activations; bf16 autocast has nothing left to do
        prec = resolve_precision(precision or cfg.train.precision, dev)
        src, tgt = Encoder(ckpt.src_tokenizer, ckpt.src_vocab), Encoder(ckpt.tgt_tokenizer, ckpt.tgt_vocab)
        return cls(cfg, net, src, tgt, dev, prec, ckpt.path or Path("checkpoint"), kept)

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
        with autocast(self.device, self.precision):
            nbests = decode(
                self.model, [s.ids for s in sources], self.decode_config(beam_size, batch_size), self.device,
                return_attention=return_attention, progress=progress,
            )
        return [hyps[0] for hyps in nbests]

    def nbest(
        self, sources: Sequence[Source], nbest: int, beam_size: int | None = None, batch_size: int | None = None
    ) -> list[list[tuple[float, str]]]:
        """The `nbest` best (score, translation) pairs per source (`sources`' result), best first; an empty text gives none.

        beam_size None: the larger of decode.beam_size and `nbest`; it must be at least `nbest`.
        """
        beam = nbest_beam(nbest, beam_size, self.cfg.decode.beam_size)
        with autocast(self.device, self.precision):
            results = decode(self.model, [s.ids for s in sources], self.decode_config(beam, batch_size), self.device, nbest=nbest)
        return nbest_texts(sources, results, self.detokenize)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tgt.text(ids)

    def translate(self, texts: Sequence[str], batch_size: int | None = None, beam_size: int | None = None) -> list[str]:
        """One output line per input text, in input order (an empty input gives an empty output)."""
        hyps = self.hypotheses(self.sources(texts), batch_size, beam_size=beam_size)
        return [self.detokenize(h.ids) if text.strip() else "" for text, h in zip(texts, hyps)]
