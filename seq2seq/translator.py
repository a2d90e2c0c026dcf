"""A trained model ready to use: checkpoint -> model + tokenizers + vocabularies, and text in, text out.

    from seq2seq import Translator
    t = Translator.load("runs/demo")
    t.translate(["I love you"])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from seq2seq.checkpoint import load_checkpoint, resolve_model_path
from seq2seq.config import Config, config_from_dict
from seq2seq.data import Encoder
from seq2seq.device import autocast, resolve_device, resolve_precision
from seq2seq.errors import CheckpointError, ConfigError, DataError
from seq2seq.model import Seq2Seq
from seq2seq.search import Hypothesis, decode_corpus, decode_corpus_nbest
from seq2seq.tokenizer import Tokenizer
from seq2seq.vocab import EOS, Vocab

log = logging.getLogger("seq2seq")


def model_from_state(state: dict[str, Any], where: str) -> tuple[Config, Seq2Seq, Encoder, Encoder]:
    """Rebuild config, model (weights loaded, eval mode, CPU) and both encoders from a checkpoint dict."""
    try:
        cfg = config_from_dict(state["config"])
        src_vocab, tgt_vocab = Vocab(state["src_vocab"]), Vocab(state["tgt_vocab"])
        tokenizer = Tokenizer.from_dict(state["tokenizer"])
        # Checkpoints before per-side subword models hold one tokenizer for both sides.
        tgt_tokenizer = Tokenizer.from_dict(state["tgt_tokenizer"]) if "tgt_tokenizer" in state else tokenizer
    except (ConfigError, DataError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: inconsistent checkpoint: {e}") from None
    model = Seq2Seq(cfg.model, len(src_vocab), len(tgt_vocab))
    weights = state["model"]
    for name, rows in (("encoder.embed.weight", len(src_vocab)), ("decoder.embed.weight", len(tgt_vocab))):
        tensor = weights.get(name) if isinstance(weights, dict) else None
        if not isinstance(tensor, torch.Tensor) or tensor.size(0) != rows:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else "nothing"
            raise CheckpointError(f"{where}: vocabulary of {rows} tokens does not match weights {name} of shape {got}")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{where}: weights do not match the model in its config: {' '.join(first[:2])[:300]}") from None
    model.eval()
    return cfg, model, Encoder(tokenizer, src_vocab), Encoder(tgt_tokenizer, tgt_vocab)


@dataclass
class Translator:
    cfg: Config
    model: Seq2Seq
    src: Encoder
    tgt: Encoder
    device: torch.device
    precision: str
    path: Path
    state: dict[str, Any]

    @classmethod
    def load(cls, model: str | Path | None = None, device: str = "auto", precision: str | None = None) -> "Translator":
        """Load a run directory or .pt file (None: the last trained run) for decoding."""
        path = resolve_model_path(model)
        state = load_checkpoint(path)
        cfg, net, src, tgt = model_from_state(state, str(path))
        dev = resolve_device(device)
        prec = resolve_precision(precision or cfg.train.precision, dev)
        return cls(cfg, net.to(dev), src, tgt, dev, prec, path, state)

    def encode_sources(self, texts: Sequence[str]) -> list[list[int]]:
        """Source ids, each ending in <eos>; inputs longer than decode.max_src_len tokens are truncated (warned)."""
        limit = self.cfg.decode.max_src_len
        sources, long_lines = [], []
        for i, text in enumerate(texts):
            ids = self.src.ids(text)
            if len(ids) > limit:
                long_lines.append(i + 1)
                ids = ids[:limit]
            sources.append(ids + [EOS])
        if long_lines:
            log.warning(
                "warning: %d input line(s) longer than decode.max_src_len=%d tokens were truncated (line %s%s)",
                len(long_lines), limit, ", ".join(map(str, long_lines[:5])), ", ..." if len(long_lines) > 5 else "",
            )
        return sources

    def hypotheses(
        self, texts: Sequence[str], batch_size: int | None = None, return_attention: bool = False, progress: bool = False,
        beam_size: int | None = None,
    ) -> list[Hypothesis]:
        """The best hypothesis per text (`progress`: a progress bar on stderr).

        beam_size None: decode.beam_size of the model's config (1: greedy).
        """
        decode = self.cfg.decode
        with autocast(self.device, self.precision):
            return decode_corpus(
                self.model, self.encode_sources(texts), self.device, batch_size or decode.batch_size,
                decode.max_len_a, decode.max_len_b, return_attention, progress=progress,
                beam_size=beam_size or decode.beam_size, alpha=decode.length_penalty, min_len=decode.min_len,
            )

    def nbest(
        self, texts: Sequence[str], nbest: int, beam_size: int | None = None, batch_size: int | None = None
    ) -> list[list[tuple[float, str]]]:
        """The `nbest` best (score, translation) pairs per text, best first; an empty text gives none.

        beam_size None: the larger of decode.beam_size and `nbest`; it must be at least `nbest`.
        """
        decode = self.cfg.decode
        beam = beam_size or max(decode.beam_size, nbest)
        if nbest > beam:
            raise ConfigError(f"--nbest {nbest} needs a beam at least as large (--beam {beam})")
        with autocast(self.device, self.precision):
            results = decode_corpus_nbest(
                self.model, self.encode_sources(texts), self.device, batch_size or decode.batch_size,
                decode.max_len_a, decode.max_len_b, beam, decode.length_penalty, decode.min_len, nbest,
            )
        return [
            [(h.score, self.detokenize(h.ids)) for h in hyps] if text.strip() else []
            for text, hyps in zip(texts, results)
        ]

    def detokenize(self, ids: Sequence[int]) -> str:
        text = self.tgt.tokenizer.detokenize(self.tgt.vocab.decode(ids))
        # A line break inside an output would shift every later line of a translated file.
        return text.replace("\r", " ").replace("\n", " ")

    def translate(self, texts: Sequence[str], batch_size: int | None = None, beam_size: int | None = None) -> list[str]:
        """One output line per input text, in input order (an empty input gives an empty output)."""
        hyps = self.hypotheses(texts, batch_size, beam_size=beam_size)
        return [self.detokenize(h.ids) if text.strip() else "" for text, h in zip(texts, hyps)]
