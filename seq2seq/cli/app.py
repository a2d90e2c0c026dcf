"""The `seq2seq` command line. Parses arguments, calls the library, maps user errors to one line and exit 2."""

from __future__ import annotations

import logging
import re
import shlex
import sys
from pathlib import Path
from typing import List, Optional

from dataclasses import dataclass

import typer

from seq2seq import __version__
from seq2seq.errors import ConfigError, Seq2SeqError, missing_module_hint
from seq2seq.cli.options import (
    BatchOpt, BeamOpt, ConfigOpt, LexiconOpt, ModelsOpt, PrecisionOpt, QuantizeOpt, SetOpt, check_models, load_config_arg,
)

# Typer re-exports click's BadParameter (vendored since typer 0.25); find its base classes by name so
# that this works whichever click it carries.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

app = typer.Typer(
    name="seq2seq",
    help="Train, evaluate and run GRU encoder-decoder translation models with attention.\n\n"
    "Quick start: seq2seq train --config configs/demo.yaml && seq2seq translate \"I love you\"",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

def _version(value: bool) -> None:
    if value:
        typer.echo(f"seq2seq {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Train, evaluate and run GRU encoder-decoder translation models with attention."""


@app.command()
def train(
    config: Path = ConfigOpt,
    overrides: Optional[List[str]] = SetOpt,
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the run directory from its last.pt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again, replacing a run already in the run directory."),
    init_from: Optional[str] = typer.Option(
        None, "--init-from", metavar="MODEL",
        help="Fine-tune: start a new run from this model (run directory or .pt): its weights, vocabularies and "
        "tokenizers, a fresh optimizer and step count, the config's data (sets train.init_from).",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bars or info lines (warnings stay). Bars are drawn only on a terminal."
    ),
) -> None:
    """Train a model; writes runs/<config stem>/ (config, vocabularies, best.pt, last.pt, metrics, log).

    Example: seq2seq train --config configs/demo.yaml --set train.epochs=5

    Fine-tuning example: seq2seq train --config new-data.yaml --init-from runs/demo
    """
    if resume and overwrite:
        raise typer.BadParameter("--resume and --overwrite exclude each other", param_hint="'--resume' / '--overwrite'")
    cfg = load_config_arg(config, overrides)  # before importing torch (seconds): a typo fails at once
    if init_from is not None:
        from seq2seq.config import replace as replace_keys

        cfg = replace_keys(cfg, "train", init_from=init_from)
    from seq2seq.training.distributed import is_main
    from seq2seq.training.interrupt import EXIT_CODE, StopRequest, TrainingInterrupted
    from seq2seq.training.rundir import default_run_dir
    from seq2seq.training.trainer import train as run_training

    try:
        with StopRequest() as stop:
            result = run_training(cfg, default_run_dir(cfg, config), resume=resume, overwrite=overwrite, quiet=quiet, stop_request=stop)
    except TrainingInterrupted as e:
        if is_main():  # under torchrun, rank 0 reports
            command = ["seq2seq", "train", "--config", str(config)]
            for item in overrides or []:
                command += ["--set", item]
            command += ["--resume"] + (["--quiet"] if quiet else [])
            # through the log, so that it reaches train.log as well as stderr
            logging.getLogger("seq2seq").warning(
                "stopped by %s at step %d; saved %s; resume with: %s", e.signal_name, e.step, e.checkpoint, shlex.join(command)
            )
        raise typer.Exit(EXIT_CODE) from None
    if not is_main():  # under torchrun, rank 0 reports
        return
    from seq2seq.metric import label, said

    p = result.progress  # the run's figures, over all its sessions
    best = f"{label(p.metric)} none yet" if p.best_score is None else said(p.metric, p.best_score)
    typer.echo(f"trained {p.step} steps in {p.elapsed:.0f} s; best val {best}; model: {result.run_dir}", err=True)


@app.command("build-vocab")
def build_vocab(config: Path = ConfigOpt, overrides: Optional[List[str]] = SetOpt) -> None:
    """Build the source and target vocabularies into the run directory (train does this when they are missing), and
    print the data report: pairs read and dropped, unknown tokens in the validation data, length-ratio outliers, leakage.

    Example: seq2seq build-vocab --config configs/demo.yaml
    """
    cfg = load_config_arg(config, overrides)
    from seq2seq.runfiles import RunFiles
    from seq2seq.training.rundir import default_run_dir, load_or_build_vocabs
    from seq2seq.training.logs import setup_logging

    files = RunFiles(default_run_dir(cfg, config))
    setup_logging()
    if files.src_vocab.exists() or files.tgt_vocab.exists():
        raise ConfigError(f"{files.root} already holds vocabularies; remove them or use another train.run_dir")
    src, tgt = load_or_build_vocabs(cfg, files, quiet=not sys.stderr.isatty())  # a bar only on a terminal
    typer.echo(f"{files.src_vocab}: {len(src)} types; {files.tgt_vocab}: {len(tgt)} types")
    from seq2seq.data.report import Side, corpus_report
    from seq2seq.training.rundir import load_or_build_tokenizers

    src_tok, tgt_tok = load_or_build_tokenizers(cfg, files)
    typer.echo("data report:\n" + "".join(f"  {line}\n" for line in corpus_report(cfg.data, Side(src_tok, src), Side(tgt_tok, tgt))), nl=False)


@app.command("eval")
def evaluate(
    models: Optional[List[str]] = ModelsOpt,
    split: str = typer.Option("val", "--split", metavar="val|test", help="Which corpus of the model's config to score: val or test."),
    data: Optional[Path] = typer.Option(
        None, "--data", metavar="FILE.tsv",
        help="Score this TSV file instead of a split; lines that share a source are one item with several references.",
    ),
    src: Optional[Path] = typer.Option(None, "--src", metavar="FILE", help="Score this source file instead of a split (needs --ref)."),
    ref: Optional[List[Path]] = typer.Option(
        None, "--ref", metavar="FILE",
        help="Reference translations of --src, line by line; repeat it for several references per line.",
    ),
    beam: Optional[int] = BeamOpt,
    batch_size: Optional[int] = BatchOpt,
    quantize: Optional[str] = QuantizeOpt,
    precision: Optional[str] = PrecisionOpt,
    lexicon: Optional[Path] = LexiconOpt,
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE", help="Also write the translations to this file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score a model: sacreBLEU BLEU, chrF and TER, exact match, CER and WER on detokenized output; loss and perplexity per real token.

    Several references per source (TSV lines that share a source, or several --ref files) count an output right
    when it matches any of them; the loss stays over every (source, reference) pair. An export or an ensemble
    (--model repeated) is scored on everything but the loss. Sources are read as translate reads them (truncated
    to decode.max_src_len tokens).

    \b
    Example:
      seq2seq eval --split test --json
      seq2seq eval --data lexicon-test.tsv
      seq2seq eval --src test.en --ref test.de --ref test2.de
      seq2seq eval --model exports/demo --model runs/demo --split test     (an ensemble)
    """
    if split not in ("val", "test"):
        raise ConfigError(f"--split: {split!r} is not one of val, test")
    if (src is None) != (not ref):
        raise ConfigError("--src and --ref go together: give both to score a file, or neither to score --split")
    if data is not None and src is not None:
        raise ConfigError("--data scores a TSV file and --src/--ref parallel files: give one of them")
    if output is not None:
        _check_output_path(output, "--output")  # now, not after the decoding
    check_models(models, quantize, precision)
    from seq2seq.decode.evaluate import evaluate as run_eval, load_split
    from seq2seq.decode.translator import open_model

    t = open_model(models, quantize=quantize, precision=precision).with_lexicon(lexicon)
    eval_set = load_split(t.cfg.data, split, src, ref, data)
    scores = run_eval(t, eval_set, beam_size=beam, batch_size=batch_size, progress=not quiet and sys.stderr.isatty())
    if output is not None:
        from seq2seq.files import atomic_write_text

        atomic_write_text(output, "".join(h + "\n" for h in scores.hypotheses))
    if as_json:
        from seq2seq.files import dump_json

        typer.echo(dump_json({**scores.as_dict(), "model": t.name}))
        return
    from seq2seq.metric import rate_lines

    typer.echo(f"model        {t.name}")
    typer.echo(f"decoding     {scores.setup.describe()}")
    typer.echo(f"sentences    {scores.n_sentences}  (target tokens {scores.n_tokens})")
    typer.echo(f"references   {scores.references} at most per sentence")
    if t.known is not None:
        typer.echo(f"lexicon      {scores.from_lexicon} of {scores.n_sentences} answered from {t.known.path}, the rest decoded")
    typer.echo(f"BLEU         {scores.bleu:.2f}   {scores.signatures['bleu']}")
    typer.echo(f"chrF         {scores.chrf:.2f}   {scores.signatures['chrf']}")
    typer.echo(f"TER          {scores.ter:.2f}   {scores.signatures['ter']}")
    for line in rate_lines(scores.exact_match, scores.cer, scores.wer):
        typer.echo(line)
    if scores.loss is None or scores.ppl is None:
        typer.echo(f"loss / ppl   none  ({t.kind}: no teacher-forced pass to score)")
    else:
        typer.echo(f"loss / ppl   {scores.loss:.4f} / {scores.ppl:.2f}  (per real target token)")


@app.command()
def split(
    file: Path = typer.Argument(..., metavar="FILE.tsv", hidden=True, show_default=False),  # the docstring says what it is
    valid: str = typer.Option(
        ..., "--valid", metavar="N|FRACTION", help="Validation sources: a count (500) or a share of the distinct sources (0.05).",
        show_default=False,
    ),
    test: str = typer.Option(
        ..., "--test", metavar="N|FRACTION", help="Test sources: a count or a share of the distinct sources.", show_default=False
    ),
    seed: int = typer.Option(1, "--seed", metavar="S", help="Seed of the draw: the same file and seed give the same splits."),
    out: Optional[Path] = typer.Option(
        None, "--out", metavar="DIR", help="Folder of train.tsv, val.tsv, test.tsv [default: the folder of FILE].", show_default=False
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace output files that exist already."),
) -> None:
    """Split one TSV file (source<TAB>target, plain or .gz) into train.tsv, val.tsv and test.tsv, grouped by source:
    all lines of one source (several pronunciations or translations) land in one split, so none is tested on a
    source it trained on. Lines keep their order; prints each split's lines, distinct sources and sources with
    several targets.

    Example: seq2seq split data/lexicon.tsv --valid 500 --test 0.1 --seed 3
    """
    from seq2seq.data.split import counts_table, parse_amount, split_file

    valid_amount, test_amount = parse_amount(valid, "--valid"), parse_amount(test, "--test")
    outputs, table = split_file(file, valid_amount, test_amount, seed, out, overwrite)
    typer.echo("\n".join(counts_table(table)))
    typer.echo("wrote " + ", ".join(str(path) for path in outputs.values()))


def _check_output_path(path: Path, option: str) -> None:
    """Fail before the work, not after it, when `path` (given as `option`) cannot be written."""
    if path.is_dir():
        raise ConfigError(f"{option}: {path} is a directory, expected a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"{option}: directory {path.parent} does not exist")


def _read_inputs(texts: Optional[List[str]], input_file: Optional[Path]) -> list[str]:
    if texts and input_file is not None:
        raise ConfigError("give TEXT or --input, not both")
    if texts:
        return [line for text in texts for line in (text.split("\n") if text else [""])]
    from seq2seq.data.corpus import decode_lines, read_lines

    if input_file is not None:
        return read_lines(input_file)
    return decode_lines(sys.stdin.buffer.read(), "<stdin>")


@app.command()
def translate(
    texts: Optional[List[str]] = typer.Argument(None, metavar="TEXT", hidden=True, show_default=False),
    models: Optional[List[str]] = ModelsOpt,
    input_file: Optional[Path] = typer.Option(None, "--input", "-i", metavar="FILE", help="Translate this file, line by line."),
    batch_size: Optional[int] = BatchOpt,
    beam: Optional[int] = BeamOpt,
    quantize: Optional[str] = QuantizeOpt,
    precision: Optional[str] = PrecisionOpt,
    lexicon: Optional[Path] = LexiconOpt,
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object per line: input, output, score (the sum of the token log-probabilities, "
        "<eos> included), tokens (and the attention with --attention)."
    ),
    attention: Optional[str] = typer.Option(
        None, "--attention", "-a", metavar="FILE|-",
        help="Show the attention: draw it into FILE (.png, .svg or .pdf; needs the plot extra; several inputs give FILE-1.png, "
        "FILE-2.png, ...), or with - as shaded blocks in the terminal (on stderr).",
        show_default=False,
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, banner or info lines."),
    nbest: int = typer.Option(
        1, "--nbest", "-n", min=1, metavar="N",
        help="Print the N best translations of each input: N lines `score<TAB>translation` (best first: ranked by the "
        "score divided by the length penalty; the score as --json's), then an empty line; with --json one object per "
        "input holding `nbest`. Needs a beam of at least N [default beam: max(N, decode.beam_size)].",
    ),
) -> None:
    """Translate text: one output line per input line, in input order (an empty line gives an empty line).

    TEXT: sentences to translate (each argument one or more lines). With no TEXT and no --input, reads stdin; when stdin is a terminal, starts an interactive prompt
    (line editing and history; :q or Ctrl-D quits). Translations go to stdout, everything else to stderr.

    \b
    Example:
      seq2seq translate "I love you"
      seq2seq translate --input test.en > test.hyp
      seq2seq translate --beam 5 --nbest 3 "I love you"
      echo "I love you" | seq2seq translate --json
      seq2seq translate "I love you" --attention a.png     (or --attention - for the terminal)
      seq2seq translate --model exports/demo "I love you"     (an export: onnxruntime, no torch)
      seq2seq translate --model runs/a --model runs/b "I love you"     (an ensemble)
    """
    from seq2seq.decode.search import nbest_beam

    attention_file = None if attention in (None, "-") else Path(attention)
    if attention_file is not None:
        from seq2seq.tools.plot import check_image_path, pyplot

        check_image_path(attention_file)
        pyplot()  # no matplotlib: say so before loading the model
    interactive = not texts and input_file is None and sys.stdin.isatty()
    lines = [] if interactive else _read_inputs(texts, input_file)
    nbest_beam(nbest, beam, 1)  # n best need a beam of n: said before the model loads
    if nbest > 1 and attention is not None:
        raise ConfigError("--attention shows one translation per input; leave out --nbest")
    check_models(models, quantize, precision)
    from seq2seq.decode.translator import open_model

    t = open_model(models, quantize=quantize, precision=precision).with_lexicon(lexicon)
    options = TranslateOptions(beam, batch_size, nbest, as_json, attention_file, attention == "-", quiet)
    if interactive:
        from seq2seq.cli.interactive import prompt_loop

        d = t.cfg.data
        kind = "" if t.kind == "checkpoint" else f", {t.kind}"
        banner = "" if quiet else f"seq2seq {__version__}: {t.name} ({d.sides}{kind}). Type a sentence; :q or Ctrl-D quits."
        prompt_loop(lambda text: _emit(t, [text], options, progress=False), banner)
        return
    # A bar only where a person watches stderr: a log file would collect every redraw.
    _emit(t, lines, options, progress=not quiet and not texts and sys.stderr.isatty())


@dataclass(frozen=True)
class TranslateOptions:
    """What `translate` was asked for, beyond the texts: how to decode and how to show the results."""

    beam_size: int | None  # None: the model's decode.beam_size (with nbest > 1: at least nbest)
    batch_size: int | None  # None: the model's decode.batch_size
    nbest: int  # translations per input; above 1, `score<TAB>translation` blocks
    as_json: bool  # one JSON object per input instead of plain text
    attention_file: Path | None  # draw each input's attention into this image (several inputs: FILE-1.png, ...)
    attention_terminal: bool  # show each input's attention as shaded blocks on stderr
    quiet: bool  # no `attention: FILE` lines


def _emit(t, lines: list[str], options: TranslateOptions, progress: bool) -> None:  # noqa: ANN001 (a Translator: imported lazily)
    """Translate `lines` and print them on stdout (n-best blocks when options.nbest > 1); heatmaps go to images or stderr."""
    from seq2seq.cli.show import attention_image_path, save_attention_plot, terminal_heatmap
    from seq2seq.decode.results import nbest_blocks, translate_results

    if options.nbest > 1:
        sys.stdout.write("".join(nbest_blocks(t, lines, options.nbest, options.beam_size, options.batch_size, options.as_json)))
        sys.stdout.flush()
        return
    with_attention = options.attention_file is not None or options.attention_terminal
    results = translate_results(
        t, lines, beam_size=options.beam_size, batch_size=options.batch_size, attention=with_attention, progress=progress
    )
    for i, r in enumerate(results):
        sys.stdout.write((r.to_json() if options.as_json else r.output) + "\n")
        if not r.attention:
            continue
        if options.attention_file is not None:
            path = attention_image_path(options.attention_file, i, len(results))
            save_attention_plot(r, path)
            if not options.quiet:
                print(f"attention: {path}", file=sys.stderr)
        elif options.attention_terminal and not options.as_json:
            sys.stdout.flush()
            print(terminal_heatmap(r), file=sys.stderr, flush=True)
    sys.stdout.flush()


from seq2seq.cli import tools  # noqa: E402 (the commands beside the main path, after the main ones)

tools.register(app)


# Typer's range checks speak another language than every other error of ours ("Input should be greater than or equal
# to 1"); said as ours are, "error: --beam: must be at least 1".
_RANGE_PHRASES = (
    (re.compile(r"^Input should be greater than or equal to (\S+)$"), r"must be at least \1"),
    (re.compile(r"^Input should be less than or equal to (\S+)$"), r"must be at most \1"),
    (re.compile(r"^Input should be greater than (\S+)$"), r"must be more than \1"),
    (re.compile(r"^Input should be less than (\S+)$"), r"must be less than \1"),
    (re.compile(r"^Input should be a valid integer.*$"), "expected an integer"),
    (re.compile(r"^Input should be a valid number.*$"), "expected a number"),
)


def _command_name(ctx) -> str:  # noqa: ANN001 (a click Context: typer vendors its own click)
    """`seq2seq translate`, however the program was started (`python -m seq2seq` names itself `python -m seq2seq`)."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["seq2seq", *reversed(names)])


def usage_line(e: Exception) -> str:
    """A usage error as one line in the form of every other error: `error: --beam: must be at least 1`, or
    `error: No such option: --frobnicate (see seq2seq translate --help)`."""
    param, message = getattr(e, "param", None), str(getattr(e, "message", "") or e)
    if type(e).__name__ == "BadParameter" and param is not None:
        for pattern, said in _RANGE_PHRASES:
            message = pattern.sub(said, message)
        name = max(param.opts, key=len) if param.param_type_name == "option" and param.opts else param.human_readable_name
        return f"error: {name}: {message}"
    ctx = getattr(e, "ctx", None)
    hint = f" (see {_command_name(ctx)} --help)" if ctx is not None and type(e).__name__ != "BadParameter" else ""
    return f"error: {e.format_message()}{hint}"  # type: ignore[attr-defined]


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        code = app(standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except _USAGE_ERROR as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            print(e.ctx.get_help() if e.ctx is not None else e.format_message())
            sys.exit(0)
        print(usage_line(e), file=sys.stderr)
        sys.exit(2)
    except _CLICK_EXCEPTION as e:
        print(f"error: {e.format_message()}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Seq2SeqError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (OSError, UnicodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except ModuleNotFoundError as e:  # a runtime-only install (the `runtime` extra) asked for what needs torch
        if not e.name or e.name.split(".")[0] == "seq2seq":
            raise
        print(f"error: {missing_module_hint(e.name.split('.')[0])}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
