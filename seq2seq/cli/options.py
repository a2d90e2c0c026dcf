"""The command-line options and checks that several commands share (cli/app.py's and cli/tools.py's)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

ConfigOpt = typer.Option(..., "--config", "-c", metavar="FILE.yaml", help="YAML config file.", show_default=False)
SetOpt = typer.Option(None, "--set", "-s", metavar="SECTION.KEY=VALUE", help="Override a config key (repeatable), e.g. --set train.lr=3e-4.")
ModelOpt = typer.Option(None, "--model", "-m", metavar="RUN_DIR|FILE.pt", help="Run directory or .pt checkpoint [default: the last trained run].", show_default=False)
ModelsOpt = typer.Option(
    None, "--model", "-m", metavar="RUN_DIR|FILE.pt|EXPORT_DIR",
    help="Run directory, .pt checkpoint or export directory (seq2seq export); repeat it to decode with the ensemble of "
    "the models (the mean of their probabilities) [default: the last trained run].", show_default=False,
)
PrecisionOpt = typer.Option(
    None, "--precision", metavar="auto|fp32|bf16",
    help="Decode a checkpoint in this precision [default: its train.precision; auto decodes a model below 4M parameters "
    "in fp32 on a CPU]. In fp32 a checkpoint decodes as its "
    "export does (same translations, scores within 1e-4); an export decodes in fp32 only.", show_default=False,
)
LexiconOpt = typer.Option(
    None, "--lexicon", metavar="FILE.tsv",
    help="Known words: sources of this TSV file (source<TAB>target, plain or .gz) are answered from it, not decoded: "
    "the first target of a source is its translation, all of them its n-best, score 0; the model translates the rest.",
    show_default=False,
)
BatchOpt = typer.Option(None, "--batch-size", "-b", min=1, metavar="N", help="Sentences per decoding batch [default: decode.batch_size].", show_default=False)
BeamOpt = typer.Option(None, "--beam", "-k", min=1, metavar="N", help="Beam size; 1 is greedy [default: decode.beam_size].", show_default=False)
QuantizeOpt = typer.Option(
    None, "--quantize", metavar="none|int8", help="int8: decode on the CPU with int8 weights [default: decode.quantize].", show_default=False
)


def _check_choice(value: Optional[str], section: str, key: str, option: str) -> None:
    """An option that takes the choices of config key section.key (config.py holds them)."""
    from seq2seq.config import choices

    valid = choices(section, key)
    if value is not None and value not in valid:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(valid)}", param_hint=f"'{option}'")


def check_models(models: Optional[List[str]], quantize: Optional[str] = None, precision: Optional[str] = None) -> None:
    """The cheap checks, before any model loads (importing torch takes seconds; an export never imports it):
    --quantize and --precision take the choices of decode.quantize and train.precision, and each --model is one."""
    _check_choice(quantize, "decode", "quantize", "--quantize")
    _check_choice(precision, "train", "precision", "--precision")
    from seq2seq.decode.translator import resolve_model

    for model in models or [None]:
        resolve_model(model)


def load_config_arg(config: Path, overrides: Optional[List[str]]):  # noqa: ANN202 (Config, imported lazily)
    from seq2seq.config import load_config

    return load_config(config, overrides or [])
