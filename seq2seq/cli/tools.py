"""The commands beside the main path: info, serve, plot, bench, preprocess, average, export, tune, score (registered by cli/app.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from seq2seq.cli.options import ConfigOpt, LexiconOpt, ModelOpt, ModelsOpt, QuantizeOpt, SetOpt, check_models, load_config_arg


def info(
    models: Optional[List[str]] = ModelsOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
) -> None:
    """Describe a model (a checkpoint or an export): architecture, parameters, vocabularies, training steps and time,
    best val score, config. Several --model: the ensemble they make, each model described.

    \b
    Example:
      seq2seq info --model runs/demo
      seq2seq info --model exports/demo --json
    """
    from seq2seq.decode.translator import open_model, resolve_model
    from seq2seq.tools.info import describe, describe_export, format_models

    found = [resolve_model(model) for model in models or [None]]
    if len(found) > 1:
        open_model(models)  # models that cannot decode together (vocabularies, tokenizers): one line, exit 2
    summaries = [describe_export(path) if kind == "export" else describe(path) for path, kind in found]
    if as_json:
        typer.echo(json.dumps(summaries[0] if len(summaries) == 1 else {"ensemble": len(summaries), "models": summaries}))
    else:
        typer.echo(format_models(summaries))


def serve(
    models: Optional[List[str]] = ModelsOpt,
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS", help="Address to listen on; 0.0.0.0 reaches other machines (no authentication)."),
    port: int = typer.Option(5000, "--port", "-p", metavar="PORT", min=0, max=65535, help="Port to listen on; 0 picks a free one (printed)."),
    beam: Optional[int] = typer.Option(
        None, "--beam", "-k", min=1, metavar="N", help="Beam of requests that name none; 1 is greedy [default: decode.beam_size].", show_default=False
    ),
    max_batch: Optional[int] = typer.Option(
        None, "--max-batch", min=1, metavar="N", help="Most sentences per decoding batch, gathered across requests [default: decode.batch_size].",
        show_default=False,
    ),
    quantize: Optional[str] = QuantizeOpt,
    lexicon: Optional[Path] = LexiconOpt,
) -> None:
    """Serve the model over HTTP until Ctrl-C or SIGTERM (needs the serve extra: pip install -e '.[serve]' from the checkout).

    OpenNMT-py's REST API (POST /translator/translate), a plain one (POST /translate, GET /health) and a
    page with the attention at /. Sentences of concurrent requests are decoded together. One line per
    request goes to stderr; on a stop signal the requests in flight finish, then it exits 0.

    \b
    Example:
      seq2seq serve --model runs/demo --port 5000
      curl -s localhost:5000/translate -d '{"text": ["I love you"]}'
    """
    from seq2seq.serve.run import require_extra, serve as run_server

    check_models(models, quantize)
    require_extra()
    run_server(models, host=host, port=port, beam=beam, max_batch=max_batch, quantize=quantize, lexicon=lexicon)


plot_app = typer.Typer(
    help="Draw pictures of a run (needs the plot extra: pip install -e '.[plot]' from the checkout).\n\nExample: seq2seq plot curves --model runs/demo",
    no_args_is_help=True,
)


@plot_app.command("curves")
def plot_curves(
    model: Optional[str] = typer.Option(
        None, "--model", "-m", metavar="RUN_DIR|FILE.pt", help="Run directory (or a .pt file in it) [default: the last trained run].", show_default=False
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", metavar="FILE", help="Image to write (.png, .svg or .pdf) [default: RUN_DIR/curves.png].", show_default=False
    ),
) -> None:
    """Plot train / validation loss and validation BLEU and chrF (and the run's train.metric when it is exact_match,
    cer or wer) against the step, from the run's metrics.jsonl.

    Example: seq2seq plot curves --model runs/demo -o curves.png
    """
    from seq2seq.model.checkpoint import resolve_model_path
    from seq2seq.training.metrics import read_metrics
    from seq2seq.runfiles import RunFiles
    from seq2seq.tools.plot import check_image_path, plot_curves as draw_curves, pyplot, run_metric

    run_dir = Path(model) if model is not None and Path(model).is_dir() else resolve_model_path(model).parent
    files = RunFiles(run_dir)
    path = output if output is not None else files.curves
    check_image_path(path)
    records = read_metrics(files.metrics)
    pyplot()
    title = f"{run_dir.resolve().name}: {max(r['step'] for r in records) if records else 0} steps"
    draw_curves(records, path, title, run_metric(files))
    typer.echo(f"curves: {path}", err=True)


def bench(
    config: Path = ConfigOpt,
    overrides: Optional[List[str]] = SetOpt,
    steps: int = typer.Option(30, "--steps", metavar="N", min=1, help="Timed training steps (after the warm-up)."),
    warmup: int = typer.Option(5, "--warmup", metavar="N", min=0, help="Untimed training steps first."),
    sentences: int = typer.Option(1000, "--sentences", metavar="N", min=1, help="Sentences of the test (else valid) corpus to decode."),
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", metavar="RUN_DIR|FILE.pt", show_default=False,
        help="Decode with this trained run directory or checkpoint (its own tokenizer) instead of the briefly trained model, whose outputs run long.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Measure training tokens/s, padding, MFU, decoding speed (greedy, beam 5) and peak memory; writes nothing.

    Example: seq2seq bench --config configs/bench_reference.yaml --set train.precision=bf16 --json
    """
    from seq2seq.tools.bench import format_table, run_bench

    result = run_bench(load_config_arg(config, overrides), steps=steps, warmup=warmup, decode_sentences=sentences, decode_model=model)
    typer.echo(json.dumps(result) if as_json else format_table(result))


def preprocess(
    config: Path = ConfigOpt,
    overrides: Optional[List[str]] = SetOpt,
    workers: Optional[int] = typer.Option(None, "--workers", "-j", metavar="N", min=1, help="Tokenizing processes [default: all cores].", show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or info lines."),
) -> None:
    """Tokenize the training corpus once into binary shards in RUN_DIR/bin/; train then reads them from disk.

    For corpora larger than memory: training memory no longer grows with the corpus. Builds the
    vocabularies too when the run directory has none; with train.init_from, the model's vocabularies and tokenizers,
    as train takes them. Example: seq2seq preprocess --config configs/demo.yaml
    """
    from seq2seq.training.preprocess import preprocess as run_preprocess
    from seq2seq.training.rundir import default_run_dir
    from seq2seq.training.logs import setup_logging

    cfg = load_config_arg(config, overrides)
    setup_logging(quiet)
    result = run_preprocess(cfg, default_run_dir(cfg, config), workers=workers, quiet=quiet or not sys.stderr.isatty())  # no bar frames in a log file
    typer.echo(
        f"{result.root}: {result.n_examples} examples of {result.n_pairs} pairs, "
        f"{result.src_tokens} + {result.tgt_tokens} tokens in {result.seconds:.1f} s",
        err=True,
    )


def average(
    models: List[str] = typer.Option(
        ..., "--model", "-m", metavar="RUN_DIR|FILE.pt", help="A run directory (its kept ckpt-STEP.pt files) or .pt checkpoints (repeat --model).",
        show_default=False,
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", metavar="FILE", help="Where to write the averaged checkpoint [default: RUN_DIR/averaged.pt].", show_default=False
    ),
) -> None:
    """Average the weights of a run's k best checkpoints (train.keep_best: k) into one checkpoint.

    Example: seq2seq average --model runs/multi30k_de_en && seq2seq eval --model runs/multi30k_de_en/averaged.pt --beam 5
    """
    from seq2seq.runfiles import RunFiles
    from seq2seq.tools.average import average_checkpoints, kept_checkpoints

    paths: list[Path] = []
    for model in models:
        path = Path(model)
        paths.extend(kept_checkpoints(path) if path.is_dir() else [path])
    if output is None:
        if len(models) != 1 or not Path(models[0]).is_dir():
            raise typer.BadParameter("give --output when averaging checkpoint files", param_hint="'--output'")
        output = RunFiles(Path(models[0])).averaged
    average_checkpoints(paths).write(output)
    typer.echo(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {output}", err=True)


def export(
    model: Optional[str] = ModelOpt,
    output: Path = typer.Option(
        ..., "--output", "-o", metavar="DIR", show_default=False,
        help="Directory to write the export into (created; an export already there is replaced).",
    ),
    quantize: str = typer.Option(
        "none", "--quantize", metavar="none|int8", help="int8: onnxruntime's dynamic quantization of the matrix products (int8 weights)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a directory that holds other files (they are left as they are)."),
) -> None:
    """Export a model to ONNX, to translate and serve without torch (needs the export extra: pip install -e '.[export]').

    Writes DIR/encoder.onnx, DIR/decoder.onnx (one decoding step; opset 17, dynamic batch and source length),
    DIR/export.json (vocabularies, tokenizers, decode defaults, the model's description) and the sentencepiece
    models of the subword levels. Both graphs are checked against torch before anything is written.

    \b
    Example:
      seq2seq export --model runs/demo --output exports/demo
      seq2seq translate --model exports/demo "I love you"     (onnxruntime and numpy; pip install -e '.[runtime]')
    """
    from seq2seq.model.checkpoint import resolve_model_path

    if quantize not in ("none", "int8"):
        raise typer.BadParameter(f"{quantize!r} is not one of none, int8", param_hint="'--quantize'")
    path = resolve_model_path(model)  # the cheap checks first: importing torch takes seconds
    from seq2seq.model.checkpoint import Checkpoint
    from seq2seq.model.export import check_output, export_checkpoint, manifest_summary

    check_output(output, overwrite)
    result = export_checkpoint(Checkpoint.read(path), output, quantize, overwrite)
    typer.echo(
        f"exported {path} -> {manifest_summary(result.output)} (fp32 graphs within {result.max_difference:.1e} of torch); "
        f"translate with: seq2seq translate --model {result.output}",
        err=True,
    )


def tune(
    config: Path = ConfigOpt,
    overrides: Optional[List[str]] = SetOpt,
    budget: float = typer.Option(
        ..., "--budget", metavar="MINUTES", show_default=False,
        help="Wall-clock minutes for this command's trials: no trial starts that could not finish in them.",
    ),
    trial_minutes: Optional[float] = typer.Option(
        None, "--trial-minutes", metavar="M", show_default=False,
        help="Minutes of training per trial (its train.max_time) [default: an eighth of the budget, within 2-10, at most the budget].",
    ),
    space: Optional[Path] = typer.Option(
        None, "--space", metavar="FILE.yaml", show_default=False,
        help="The search space: config keys with a range or choices [default: lr, one size knob for the hidden and "
        "embedding sizes, dropout, label smoothing, max_tokens; the rest stays the config's].",
    ),
    storage: Optional[str] = typer.Option(
        None, "--storage", metavar="URL", show_default=False,
        help="Keep the study in this database (an SQLAlchemy URL: postgresql://..., sqlite:///...) so that several machines "
        "run its trials [default: DIR/study.journal].",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", metavar="DIR", show_default=False,
        help="Where the trials' run directories (DIR/trial-NNNN), the study, best.yaml and trials.png go [default: runs/<config stem>-tune].",
    ),
) -> None:
    """Search hyperparameters with Optuna (needs the tune extra: pip install -e '.[tune]'): quasi-random trials, then
    multivariate TPE, propose each trial's settings; every trial validates at the same minutes of training, and
    successive halving stops those that trail there; each trial is an ordinary run directory trained by
    `seq2seq train`. The same command again continues the study.

    Prints a table of the trials (their scores at each rung) and writes DIR/best.yaml (the config with the best
    settings, training into DIR-best) and DIR/trials.png; runs/latest then names the best trial's run.

    \b
    Example:
      seq2seq tune --config configs/demo.yaml --budget 60 --space space.yaml
      seq2seq train --config runs/demo-tune/best.yaml
    """
    from seq2seq.tools.tune import TuneOptions, tune as run_tune

    result = run_tune(TuneOptions(config, tuple(overrides or ()), budget, trial_minutes, space, storage, out))
    typer.echo(result.table)
    typer.echo(result.hint, err=True)  # how to train best.yaml, and the run directory it goes to


def register(app: typer.Typer) -> None:
    """Add these commands to the `seq2seq` app, after the core's."""
    app.command()(info)
    app.command()(serve)
    app.command()(bench)
    app.command()(preprocess)
    app.command()(average)
    app.command()(export)
    app.command()(tune)
    app.command()(score)
    app.add_typer(plot_app, name="plot")


def score(
    hyp: Path = typer.Option(
        ..., "--hyp", metavar="OUTPUT.txt", show_default=False,
        help="The outputs to score: one line per evaluation item, in the items' order (eval --output writes such a file).",
    ),
    data: Optional[Path] = typer.Option(
        None, "--data", metavar="FILE.tsv",
        help="The references: a TSV file; lines that share a source are one item (its distinct sources, in first-seen order).",
    ),
    src: Optional[Path] = typer.Option(None, "--src", metavar="FILE", help="The references as parallel files: the source file (needs --ref)."),
    ref: Optional[List[Path]] = typer.Option(
        None, "--ref", metavar="FILE", help="Reference translations of --src, line by line; repeat it for several references per line.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Score any system's output file with eval's metrics: sacreBLEU BLEU, chrF and TER, exact match, CER and WER,
    against one or several references per item, as eval scores a model (no model needed, and no torch).

    The items are eval's: for --data, the TSV file's distinct sources in the order of their first line, each with
    all of its targets as references; for --src/--ref, one per source line. Scoring eval --output's file against the
    data eval scored gives eval's numbers.

    \b
    Example:
      seq2seq score --data test.tsv --hyp phonetisaurus.txt
      seq2seq score --src test.en --ref test.de --ref test2.de --hyp system.de --json
    """
    from seq2seq.tools.score import score_file, score_lines

    scores = score_file(hyp, data, src, ref)
    if as_json:
        from seq2seq.files import dump_json

        typer.echo(dump_json({**scores.as_dict(), "hypotheses": str(hyp)}))
        return
    typer.echo(f"hypotheses   {hyp}")
    typer.echo("\n".join(score_lines(scores)))
