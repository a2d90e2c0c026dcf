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
from seq2seq.search import Hypothesis, decode_corpus
from seq2seq.tokenizer import Tokenizer
from seq2seq.vocab import EOS, Vocab

log = logging.getLogger("seq2seq")


def model_from_state(state: dict[str, Any], where: str) -> tuple[Config, Seq2Seq, Encoder, Encoder]:
    """Rebuild config, model (weights loaded, eval mode, CPU) and both encoders from a checkpoint dict."""
    try:
        cfg = config_from_dict(state["config"])
        src_vocab, tgt_vocab = Vocab(state["src_vocab"]), Vocab(state["tgt_vocab"])
        tokenizer = Tokenizer.from_dict(state["tokenizer"])
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
    return cfg, model, Encoder(tokenizer, src_vocab), Encoder(tokenizer, tgt_vocab)


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
        self, texts: Sequence[str], batch_size: int | None = None, return_attention: bool = False, progress: bool = False
    ) -> list[Hypothesis]:
        """One Hypothesis per text (`progress`: a progress bar on stderr)."""
        decode = self.cfg.decode
        with autocast(self.device, self.precision):
            return decode_corpus(
                self.model, self.encode_sources(texts), self.device, batch_size or decode.batch_size,
                decode.max_len_a, decode.max_len_b, return_attention, progress,
            )

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tgt.tokenizer.detokenize(self.tgt.vocab.decode(ids))

    def translate(self, texts: Sequence[str], batch_size: int | None = None) -> list[str]:
        """One output line per input text, in input order (an empty input gives an empty output)."""
        hyps = self.hypotheses(texts, batch_size)
        outputs = [self.detokenize(h.ids) if text.strip() else "" for text, h in zip(texts, hyps)]
        # A line break inside an output would shift every later line of a translated file.
        return [o.replace("\r", " ").replace("\n", " ") for o in outputs]
