"""The command line end to end: train a tiny model, eval, translate (files, arguments, stdin, JSON, attention),
help, completion, and one-line errors (the full catalogue of bad input: tests/test_bad_input.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import seq2seq
from seq2seq.config import replace
from seq2seq.model.checkpoint import Checkpoint
from tests.conftest import ONE_THREAD, ROOT, TINY_CONFIG, CliJob, invoke, run_cli, run_cli_many, toy_pairs, write_corpus


ENV = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def run(api_run: Path) -> Path:
    return api_run


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_train_writes_a_complete_run_directory(tiny_run: Path):
    run = tiny_run / "runs" / "tiny"
    for name in ("config.yaml", "src_vocab.json", "tgt_vocab.json", "best.pt", "last.pt", "metrics.jsonl", "train.log"):
        assert (run / name).is_file(), name
    assert Path((tiny_run / "runs" / "latest").read_text().strip()) == run.resolve()
    state = torch.load(run / "best.pt", weights_only=True)
    assert state["config"]["model"]["hidden_size"] == 48 and state["src_vocab"][:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_bleu" in r for r in records)


@pytest.fixture(scope="module")
def fp32_model(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run's best.pt, set to decode in fp32. Batch-size invariance is exact in fp32; under bf16 autocast
    (what `auto` picks on a CPU with native bf16) kernels chosen for another batch shape round differently."""
    ckpt = Checkpoint.read(tiny_run / "runs" / "tiny" / "best.pt")
    path = tmp_path_factory.mktemp("fp32") / "fp32.pt"
    dataclasses.replace(ckpt, config=replace(ckpt.config, "train", precision="fp32")).write(path)
    return path


def test_eval_json_is_batch_size_invariant(tiny_run: Path, fp32_model: Path):
    one, many = run_cli_many([
        CliJob(("eval", "--model", str(fp32_model), "--json", "--batch-size", "1"), tiny_run),
        CliJob(("eval", "--model", str(fp32_model), "--json", "--batch-size", "64"), tiny_run),
    ])
    assert one.returncode == 0 and many.returncode == 0, one.stderr + many.stderr
    a, b = json.loads(one.stdout), json.loads(many.stdout)
    for key in ("bleu", "chrf", "ter", "loss", "ppl", "n_sentences", "n_tokens"):
        assert key in a
    assert a["n_sentences"] == 120 and a["n_tokens"] == b["n_tokens"]
    assert "\r" not in one.stderr + many.stderr  # stderr is a pipe here: no progress-bar frames (issue 21, 1.7)
    assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(b["loss"])
    assert a["bleu"] == b["bleu"] and a["chrf"] == b["chrf"]
    assert a["bleu"] > 10  # it learned something in 3 tiny epochs
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in a["signatures"]["bleu"]


def test_translate_file_is_batch_size_invariant_and_keeps_every_line(tmp_path: Path, fp32_model: Path):
    lines = [s for s, _ in toy_pairs("test", 60)]
    lines[5] = ""
    lines[17] = "   "
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    one, many = run_cli_many([
        CliJob(("translate", "--model", str(fp32_model), "--input", "in.txt", "--batch-size", "1"), tmp_path),
        CliJob(("translate", "--model", str(fp32_model), "--input", "in.txt", "--batch-size", "64"), tmp_path),
    ])
    assert one.returncode == 0, one.stderr
    assert one.stdout == many.stdout
    out = one.stdout.split("\n")[:-1]
    assert len(out) == 60 and out[5] == "" and out[17] == ""


def test_translate_args_and_stdin(tiny_run: Path):
    args = run_cli("translate", "I see you", "", "She sees the dog.", "--model", "runs/tiny", cwd=tiny_run)
    assert args.returncode == 0, args.stderr
    assert len(args.stdout.split("\n")[:-1]) == 3 and args.stdout.split("\n")[1] == ""
    piped = run_cli("translate", cwd=tiny_run, stdin="I see you\n\nShe sees the dog.\n")
    assert piped.stdout == args.stdout


def test_training_again_refuses_to_overwrite_a_run(tiny_run: Path):
    before = (tiny_run / "runs" / "tiny" / "best.pt").read_bytes()
    proc = run_cli("train", "--config", "tiny.yaml", cwd=tiny_run)
    assert "--resume" in _one_line_error(proc)
    assert (tiny_run / "runs" / "tiny" / "best.pt").read_bytes() == before


def test_build_vocab_only_builds_the_vocabulary(tmp_path: Path):
    train = write_corpus(tmp_path, "train", toy_pairs("train", 50))
    (tmp_path / "c.yaml").write_text(TINY_CONFIG.format(train=train, valid=train, epochs=1), encoding="utf-8")
    proc = run_cli("build-vocab", "--config", "c.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "c"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "src_vocab.json", "tgt_vocab.json"]
    assert json.loads((run / "src_vocab.json").read_text())[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]



def test_unknown_model_and_unknown_option_are_one_line_exit_2(tmp_path: Path):
    assert "no such model" in _one_line_error(run_cli("translate", "hi", "--model", "nope.pt", cwd=tmp_path))
    assert "No such option" in _one_line_error(run_cli("eval", "--bogus", cwd=tmp_path))
    assert "train one first" in _one_line_error(run_cli("translate", "hi", cwd=tmp_path))


def test_version_and_help():
    proc = run_cli("--version", cwd=Path.cwd())
    assert proc.returncode == 0 and proc.stdout.startswith("seq2seq ")
    helptext = run_cli("--help", cwd=Path.cwd()).stdout
    for command in ("train", "eval", "translate", "build-vocab"):
        assert command in helptext  # each command's own --help: test_every_command_help_shows_an_example


def test_piped_translate_prints_only_translations_and_json_lines_parse(run: Path, tmp_path: Path) -> None:
    lines = ["I love you", "", "A bear hears the horses."]
    expected = seq2seq.Translator.load(run).translate(lines)
    plain = run_cli("translate", "--model", str(run), cwd=tmp_path, stdin="\n".join(lines) + "\n")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split("\n") == expected + [""]
    as_json = run_cli("translate", "--model", str(run), "--json", cwd=tmp_path, stdin="\n".join(lines) + "\n")
    assert as_json.returncode == 0, as_json.stderr
    objects = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [o["input"] for o in objects] == lines
    assert [o["output"] for o in objects] == expected
    assert all(isinstance(o["score"], float) and o["score"] <= 0 and isinstance(o["tokens"], list) for o in objects)
    assert "attention" not in objects[0]
    assert objects[1] == {"input": "", "output": "", "score": 0.0, "tokens": []}


def test_json_attention_rows_are_distributions_over_the_source(run: Path, capsys, monkeypatch) -> None:
    code, stdout, stderr = invoke(capsys, monkeypatch, "translate", "A bear hears the horses.", "--model", str(run), "--json", "--attention", "-")
    assert code == 0, stderr
    obj = json.loads(stdout)
    assert obj["src_tokens"][-1] == "<eos>"
    for row in obj["attention"]:
        assert len(row) == len(obj["src_tokens"])
        assert sum(row) == pytest.approx(1.0, abs=1e-3)
    assert "\u2588" not in stderr  # with --json the attention is in the JSON, not drawn


def test_terminal_attention_goes_to_stderr(run: Path, capsys, monkeypatch) -> None:
    code, stdout, stderr = invoke(capsys, monkeypatch, "translate", "I love you", "--model", str(run), "--attention", "-")
    assert code == 0
    assert len(stdout.splitlines()) == 1
    assert stderr.splitlines()[0].split() == ["I", "love", "you", "<eos>"]


def _commands(group, path: tuple[str, ...] = ()):  # noqa: ANN001, ANN202 (click objects)
    for name, command in group.commands.items():
        yield path + (name,), command
        if hasattr(command, "commands"):
            yield from _commands(command, path + (name,))


def test_every_command_help_shows_an_example(capsys, monkeypatch) -> None:
    import typer.main

    from seq2seq.cli.app import app

    commands = list(_commands(typer.main.get_command(app)))
    assert {("translate",), ("info",), ("plot",), ("plot", "curves")} <= {p for p, _ in commands}
    for path, _ in commands:
        code, stdout, _ = invoke(capsys, monkeypatch, *path, "--help")
        assert code == 0
        assert "Example" in stdout, f"seq2seq {' '.join(path)} --help shows no example"


def test_shell_completion_completes_commands_and_options(tmp_path: Path) -> None:
    env = {**ENV, "_SEQ2SEQ_COMPLETE": "complete_bash", "COMP_WORDS": "seq2seq tr", "COMP_CWORD": "1"}
    code = "import sys; sys.argv = ['seq2seq']; from seq2seq.cli.app import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"train", "translate"}
    script = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv = ['seq2seq', '--show-completion', 'bash']; from seq2seq.cli.app import main; main()"],
        capture_output=True, text=True, env=ENV, timeout=60,
    )
    assert script.returncode == 0 and "_SEQ2SEQ_COMPLETE=complete_bash" in script.stdout


def test_a_missing_optional_module_names_the_extra_that_installs_it():
    """Not every missing module is torch: the hint names the feature's extra (from the installed metadata), not the
    runtime-only install's advice, which only a missing torch gets."""
    from seq2seq.errors import missing_module_hint

    assert missing_module_hint("optuna").endswith("(from the checkout: pip install -e '.[tune]')")
    assert "torch" not in missing_module_hint("optuna")
    assert "run an export" in missing_module_hint("torch")
    assert missing_module_hint("no_such_module") == "this needs no_such_module, which is not installed here"
