"""`seq2seq translate --model EXPORT_DIR`: translating with an export on onnxruntime, torch never imported.

cli/app.translate hands over here when --model is an export directory (`model.export_format.is_export`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from seq2seq import __version__
from seq2seq.errors import ConfigError


def translate_export(
    model: str, lines: list[str], interactive: bool, *, beam: int | None, batch_size: int | None, quantize: str | None,
    nbest: int, as_json: bool, attention: str | None, quiet: bool, progress: bool,
) -> None:
    """Translate `lines` (or the terminal's, `interactive`) with the export in `model`; print as translate does."""
    from seq2seq.runtime.translator import ExportTranslator

    if attention is not None:
        raise ConfigError("--attention: not available with an export (it draws with the full install); leave it out")
    t = ExportTranslator.load(Path(model), quantize=quantize)

    def emit(texts: list[str], bar: bool) -> None:
        from seq2seq.data.results import make_results, nbest_blocks

        if nbest > 1:
            sys.stdout.write("".join(nbest_blocks(t, texts, nbest, beam, batch_size, as_json)))
        else:
            sources = t.sources(texts)
            results = make_results(t, sources, t.hypotheses(sources, batch_size, progress=bar, beam_size=beam))
            sys.stdout.write("".join((r.to_json() if as_json else r.output) + "\n" for r in results))
        sys.stdout.flush()

    if interactive:
        from seq2seq.cli.interactive import prompt_loop

        d = t.cfg.data
        banner = "" if quiet else f"seq2seq {__version__}: {t.path} ({d.src_lang} -> {d.tgt_lang}, export). Type a sentence; :q or Ctrl-D quits."
        prompt_loop(lambda text: emit([text], False), banner)
        return
    emit(lines, progress)
