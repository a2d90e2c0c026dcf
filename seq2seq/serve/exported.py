"""Serving an export (`seq2seq serve --model EXPORT_DIR`): decode_texts of serve/batching, on the torch-free runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from seq2seq.serve.batching import Decoded, Settings

if TYPE_CHECKING:
    from seq2seq.runtime.translator import ExportTranslator


def decode_export_texts(t: ExportTranslator, texts: list[str], settings: Settings, batch_size: int) -> list[Decoded]:
    """As batching.decode_texts, with an ExportTranslator and the runtime's results."""
    from seq2seq.runtime.results import Result, make_results

    lengths = [len(t.src.ids(text)) if text.strip() else 0 for text in texts]
    if settings.nbest == 1:
        hyps = t.hypotheses(texts, batch_size, return_attention=settings.attention, beam_size=settings.beam)
        return [Decoded(r, [(r.score, r.output)], n) for r, n in zip(make_results(t, texts, hyps), lengths)]  # type: ignore[arg-type]
    out = []
    for text, block, n in zip(texts, t.nbest(texts, settings.nbest, settings.beam, batch_size), lengths):
        score, output = block[0] if block else (0.0, "")
        out.append(Decoded(Result(text, output, score, [], [], None), block, n))  # type: ignore[arg-type]
    return out
