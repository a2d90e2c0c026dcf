"""An export ready to translate: export.json + the two graphs -> text in, text out (the torch-free Translator).

    from seq2seq.runtime.translator import ExportTranslator
    t = ExportTranslator.load("exports/demo")
    t.translate(["I love you"])

The same methods as `seq2seq.decode.translator.Translator` that translate and serve call (hypotheses, nbest,
translate, detokenize, encode_sources), on onnxruntime and numpy.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from seq2seq.config import Config, DecodeConfig, config_from_dict
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import EOS, Vocab
from seq2seq.errors import CheckpointError, ConfigError, DataError
from seq2seq.model.export_format import MANIFEST, read_manifest
from seq2seq.runtime.graphs import OnnxGraphs
from seq2seq.runtime.search import Hypothesis, decode

log = logging.getLogger("seq2seq")


@dataclass(frozen=True)
class TextSide:
    """Text -> ids for one side (as data/batch.Encoder, which imports torch)."""

    tokenizer: Tokenizer
    vocab: Vocab

    def ids(self, text: str) -> list[int]:
        return self.vocab.encode(self.tokenizer.tokenize(text))


def _tokenizer(directory: Path, entry: Any) -> Tokenizer:
    sp = entry.get("sp_model")
    return Tokenizer(level=str(entry["level"]), lowercase=bool(entry["lowercase"]), sp_model=None if sp is None else (directory / sp).read_bytes())


@dataclass
class ExportTranslator:
    """An export ready to decode: its config, its graphs, both text sides, where it lives."""

    cfg: Config
    graphs: OnnxGraphs
    src: TextSide
    tgt: TextSide
    path: Path  # the export directory
    quantize: str  # none | int8, as exported
    device: str = "cpu"
    precision: str = "fp32"  # activations; int8 exports hold int8 weights

    @classmethod
    def load(cls, directory: str | Path, quantize: str | None = None, threads: int = 0) -> "ExportTranslator":
        """Read and check the export in `directory`. `quantize` None or the export's own (it was chosen at export
        time); `threads` 0: onnxruntime's choice."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        if quantize is not None and quantize != manifest["quantize"]:
            raise ConfigError(
                f"--quantize {quantize}: {directory} is an export with quantize {manifest['quantize']} "
                f"(choose it at export time: seq2seq export --quantize {quantize})"
            )
        try:
            cfg = config_from_dict(manifest["config"])
            src = TextSide(_tokenizer(directory, manifest["tokenizer"]["src"]), Vocab(manifest["src_vocab"]))
            tgt = TextSide(_tokenizer(directory, manifest["tokenizer"]["tgt"]), Vocab(manifest["tgt_vocab"]))
        except (ConfigError, DataError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{directory / MANIFEST}: inconsistent export: {e}") from None
        return cls(cfg, OnnxGraphs(directory, manifest, threads), src, tgt, directory, str(manifest["quantize"]))

    def decode_config(self, beam_size: int | None = None, batch_size: int | None = None) -> DecodeConfig:
        changes = {name: value for name, value in (("beam_size", beam_size), ("batch_size", batch_size)) if value is not None}
        return dataclasses.replace(self.cfg.decode, **changes)

    def encode_sources(self, texts: Sequence[str]) -> list[list[int]]:
        """Source ids, each ending in <eos>; inputs longer than decode.max_src_len tokens are truncated (warned)."""
        limit = self.cfg.decode.max_src_len
        sources, long_lines = [], []
        for i, text in enumerate(texts):
            ids = self.src.ids(text)
            if len(ids) > limit:
                long_lines.append(i + 1)
                ids = ids[:limit]
            sources.append([*ids, EOS])  # data/batch.with_source_end's rule (that module imports torch)
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
        """The best hypothesis per text; beam_size / batch_size None: the export's decode config."""
        d = self.decode_config(beam_size, batch_size)
        nbests = decode(self.graphs, self.encode_sources(texts), d, return_attention=return_attention, progress=progress)
        return [hyps[0] for hyps in nbests]

    def nbest(
        self, texts: Sequence[str], nbest: int, beam_size: int | None = None, batch_size: int | None = None
    ) -> list[list[tuple[float, str]]]:
        """The `nbest` best (score, translation) pairs per text, best first; an empty text gives none."""
        beam = beam_size or max(self.cfg.decode.beam_size, nbest)
        if nbest > beam:
            raise ConfigError(f"--nbest {nbest} needs a beam at least as large (--beam {beam})")
        results = decode(self.graphs, self.encode_sources(texts), self.decode_config(beam, batch_size), nbest=nbest)
        return [[(h.score, self.detokenize(h.ids)) for h in hyps] if text.strip() else [] for text, hyps in zip(texts, results)]

    def detokenize(self, ids: Sequence[int]) -> str:
        text = self.tgt.tokenizer.detokenize(self.tgt.vocab.decode(ids))
        return text.replace("\r", " ").replace("\n", " ")

    def translate(self, texts: Sequence[str], batch_size: int | None = None, beam_size: int | None = None) -> list[str]:
        """One output line per input text, in input order (an empty input gives an empty output)."""
        hyps = self.hypotheses(texts, batch_size, beam_size=beam_size)
        return [self.detokenize(h.ids) if text.strip() else "" for text, h in zip(texts, hyps)]
