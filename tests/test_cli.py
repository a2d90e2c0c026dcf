"""The command line end to end: train a tiny model, eval, translate, and clean errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_CONFIG, run_cli, toy_pairs, write_corpus


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


def test_eval_json_is_batch_size_invariant(tiny_run: Path):
    one = run_cli("eval", "--json", "--batch-size", "1", cwd=tiny_run)
    many = run_cli("eval", "--json", "--batch-size", "64", cwd=tiny_run)
    assert one.returncode == 0 and many.returncode == 0, one.stderr + many.stderr
    a, b = json.loads(one.stdout), json.loads(many.stdout)
    for key in ("bleu", "chrf", "ter", "loss", "ppl", "n_sentences", "n_tokens"):
        assert key in a
    assert a["n_sentences"] == 120 and a["n_tokens"] == b["n_tokens"]
    assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(b["loss"])
    assert a["bleu"] == b["bleu"] and a["chrf"] == b["chrf"]
    assert a["bleu"] > 10  # it learned something in 3 tiny epochs
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in a["signatures"]["bleu"]


def test_translate_file_is_batch_size_invariant_and_keeps_every_line(tiny_run: Path):
    lines = [s for s, _ in toy_pairs("test", 60)]
    lines[5] = ""
    lines[17] = "   "
    (tiny_run / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    one = run_cli("translate", "--input", "in.txt", "--batch-size", "1", cwd=tiny_run)
    many = run_cli("translate", "--input", "in.txt", "--batch-size", "64", cwd=tiny_run)
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


@pytest.mark.parametrize(
    "case, expected",
    [
        ("malformed_yaml", "c.yaml:3: malformed YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence at line 2)"),
        ("unknown_key", "model.hiden_size: unknown key (did you mean 'hidden_size'?)"),
        ("missing_corpus", "nowhere.en: file not found"),
        ("misaligned", "misaligned corpus"),
        ("non_utf8", "bad.en:2: not valid UTF-8"),
        ("missing_config", "config file not found"),
    ],
)
def test_bad_training_input_is_one_line_exit_2(tmp_path: Path, case: str, expected: str):
    good = write_corpus(tmp_path, "good", toy_pairs("train", 20))
    config = TINY_CONFIG.format(train=good, valid=good, epochs=1)
    if case == "malformed_yaml":
        config = "data:\n  train: [unclosed\n"
    elif case == "unknown_key":
        config = config.replace("hidden_size", "hiden_size")
    elif case == "missing_corpus":
        config = config.replace(f"train: {good}", f"train: {tmp_path / 'nowhere'}")
    elif case == "misaligned":
        (tmp_path / "mis.en").write_text("a\nb\n", encoding="utf-8")
        (tmp_path / "mis.de").write_text("a\n", encoding="utf-8")
        config = config.replace(f"train: {good}", f"train: {tmp_path / 'mis'}")
    elif case == "non_utf8":
        (tmp_path / "bad.en").write_bytes(b"fine\nnot \xc3\x28 fine\n")
        (tmp_path / "bad.de").write_text("a\nb\n", encoding="utf-8")
        config = config.replace(f"train: {good}", f"train: {tmp_path / 'bad'}")
    if case != "missing_config":
        (tmp_path / "c.yaml").write_text(config, encoding="utf-8")
    proc = run_cli("train", "--config", "c.yaml", cwd=tmp_path)
    assert expected in _one_line_error(proc)


def test_unknown_model_and_unknown_option_are_one_line_exit_2(tmp_path: Path):
    assert "no such model" in _one_line_error(run_cli("translate", "hi", "--model", "nope.pt", cwd=tmp_path))
    assert "No such option" in _one_line_error(run_cli("eval", "--bogus", cwd=tmp_path))
    assert "train one first" in _one_line_error(run_cli("translate", "hi", cwd=tmp_path))


def test_version_and_help():
    proc = run_cli("--version", cwd=Path.cwd())
    assert proc.returncode == 0 and proc.stdout.startswith("seq2seq ")
    helptext = run_cli("--help", cwd=Path.cwd()).stdout
    for command in ("train", "eval", "translate", "build-vocab"):
        assert command in helptext
        assert "Example:" in run_cli(command, "--help", cwd=Path.cwd()).stdout
