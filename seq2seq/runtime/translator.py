"""An export ready to translate: export.json + the two graphs -> text in, text out (the torch-free Translator).

    from seq2seq.runtime.translator import ExportTranslator
    t = ExportTranslator.load("exports/demo")
    t.translate(["I love you"])

The same methods as `seq2seq.decode.translator.Translator` that translate and serve call (sources, hypotheses,
nbest, translate, detokenize), on onnxruntime and numpy; sources are encoded and results made by the same
torch-free functions (data/encoding.encode_sources, data/results).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from seq2seq.config import Config, DecodeConfig, config_from_dict
from seq2seq.data.encoding import Encoder, Source, encode_sources
from seq2seq.data.results import nbest_beam, nbest_texts
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import Vocab
from seq2seq.errors import CheckpointError, ConfigError, DataError
from seq2seq.model.export_format import MANIFEST, read_manifest
from seq2seq.runtime.graphs import OnnxGraphs
from seq2seq.runtime.search import Hypothesis, decode

def _tokenizer(directory: Path, entry: Any) -> Tokenizer:
    sp = entry.get("sp_model")
    return Tokenizer(level=str(entry["level"]), lowercase=bool(entry["lowercase"]), sp_model=None if sp is None else (directory / sp).read_bytes())


@dataclass
class ExportTranslator:
    """An export ready to decode: its config, its graphs, both text sides, where it lives."""

    cfg: Config
    graphs: OnnxGraphs
    src: Encoder
    tgt: Encoder
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
            src = Encoder(_tokenizer(directory, manifest["tokenizer"]["src"]), Vocab(manifest["src_vocab"]))
            tgt = Encoder(_tokenizer(directory, manifest["tokenizer"]["tgt"]), Vocab(manifest["tgt_vocab"]))
        except (ConfigError, DataError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{directory / MANIFEST}: inconsistent export: {e}") from None
        return cls(cfg, OnnxGraphs(directory, manifest, threads), src, tgt, directory, str(manifest["quantize"]))

    def decode_config(self, beam_size: int | None = None, batch_size: int | None = None) -> DecodeConfig:
        changes = {name: value for name, value in (("beam_size", beam_size), ("batch_size", batch_size)) if value is not None}
        return dataclasses.replace(self.cfg.decode, **changes)

    def sources(self, texts: Sequence[str], warn_truncated: bool = True) -> list[Source]:
        """Each text as the model reads it, as Translator.sources (data/encoding.encode_sources)."""
        return encode_sources(self.src, texts, self.cfg.decode.max_src_len, warn_truncated)

    def hypotheses(
        self, sources: Sequence[Source], batch_size: int | None = None, return_attention: bool = False, progress: bool = False,
        beam_size: int | None = None,
    ) -> list[Hypothesis]:
        """The best hypothesis per source (`sources`' result); beam_size / batch_size None: the export's decode config."""
        d = self.decode_config(beam_size, batch_size)
        nbests = decode(self.graphs, [s.ids for s in sources], d, return_attention=return_attention, progress=progress)
        return [hyps[0] for hyps in nbests]

    def nbest(
        self, sources: Sequence[Source], nbest: int, beam_size: int | None = None, batch_size: int | None = None
    ) -> list[list[tuple[float, str]]]:
        """The `nbest` best (score, translation) pairs per source (`sources`' result), best first; an empty text gives none."""
        beam = nbest_beam(nbest, beam_size, self.cfg.decode.beam_size)
        results = decode(self.graphs, [s.ids for s in sources], self.decode_config(beam, batch_size), nbest=nbest)
        return nbest_texts(sources, results, self.detokenize)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tgt.text(ids)

    def translate(self, texts: Sequence[str], batch_size: int | None = None, beam_size: int | None = None) -> list[str]:
        """One output line per input text, in input order (an empty input gives an empty output)."""
        hyps = self.hypotheses(self.sources(texts), batch_size, beam_size=beam_size)
        return [self.detokenize(h.ids) if text.strip() else "" for text, h in zip(texts, hyps)]
